"""Released checkpoints: downloads through gdown from a local server standing in for Google
Drive (ZOO_MIRROR), resumed, checked against their first download, and evaluated end to end
on the demo data through train.py."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
import torch

from engine.fetch import Records
from scripts.zoo import catalogue, store
from scripts.zoo.__main__ import main
from tests.http_server import serve

MAPLE_FOLDER = catalogue.find("maple-b2n").source  # the real entry's Drive folder id


def official_maple_file(seed: int, width: int = 64, n_ctx: int = 2, n_cls: int = 4) -> bytes:
    """A MaPLe checkpoint as the official code saves it (Dassl's dict, official key names,
    the token buffers it stores too) for a CLIP of ``width`` and prompt depth 2."""
    g = torch.Generator().manual_seed(seed)
    state = {
        "prompt_learner.ctx": torch.randn(n_ctx, width, generator=g) * 0.02,
        "prompt_learner.proj.weight": torch.randn(width, width, generator=g) * width ** -0.5,
        "prompt_learner.proj.bias": torch.zeros(width),
        "prompt_learner.compound_prompts_text.0": torch.randn(n_ctx, width, generator=g) * 0.02,
        "prompt_learner.compound_prompt_projections.0.weight":
            torch.randn(width, width, generator=g) * width ** -0.5,
        "prompt_learner.compound_prompt_projections.0.bias": torch.zeros(width),
        "prompt_learner.token_prefix": torch.full((n_cls, 1, width), 7.0),
        "prompt_learner.token_suffix": torch.full((n_cls, 74, width), 7.0),
    }
    buffer = io.BytesIO()
    torch.save({"state_dict": state, "epoch": 5, "optimizer": None, "scheduler": None}, buffer)
    return buffer.getvalue()


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def publish(mirror: Path, folder_id: str, files: dict[str, bytes]) -> None:
    """Files of a Drive folder, as ZOO_MIRROR serves them (with the folder's index)."""
    root = mirror / folder_id
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "index.json").write_text(json.dumps(sorted(files)))


def maple_zip(seed: int) -> bytes:
    return zip_of({"dtd/base/seed1/MultiModalPromptLearner/model.pth.tar-5":
                   official_maple_file(seed)})


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    folder = tmp_path / "mirror"
    with serve(folder) as server:
        monkeypatch.setenv("ZOO_MIRROR", server.url)
        monkeypatch.setenv("ZOO_DIR", str(tmp_path / "zoo"))
        monkeypatch.delenv("ZOO_CATALOGUE", raising=False)
        yield folder, server


def gets(server, path: str) -> list[str | None]:
    return [rng for p, rng in server.requests if p == path]


def test_download_records_unpacks_and_locates_a_catalogue_entry(mirror, tmp_path, capsys):
    folder, server = mirror
    archive = maple_zip(1)
    publish(folder, MAPLE_FOLDER, {"dtd.zip": archive})
    assert main(["download", "maple-b2n"]) == 0
    zoo = tmp_path / "zoo"
    record = Records(zoo / "records.json").get("maple-b2n/dtd.zip")
    assert record["size"] == len(archive)
    assert record["sha256"] == hashlib.sha256(archive).hexdigest()
    capsys.readouterr()
    assert main(["path", "maple-b2n", "--dataset", "dtd", "--seed", "1"]) == 0
    model_dir = Path(capsys.readouterr().out.strip())
    assert model_dir == zoo / "maple-b2n" / "dtd" / "base" / "seed1"
    assert (model_dir / "MultiModalPromptLearner" / "model.pth.tar-5").is_file()
    # a second download only checks what is there
    assert main(["download", "maple-b2n"]) == 0
    assert len(gets(server, f"/{MAPLE_FOLDER}/dtd.zip")) == 1
    # a seed the release does not hold: one line naming what is there
    assert main(["path", "maple-b2n", "--dataset", "dtd", "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert "no dtd/base/seed2" in err and "dtd/base/seed1" in err and err.count("\n") == 1


def test_an_interrupted_transfer_resumes_where_it_stopped(mirror, tmp_path, capsys):
    folder, server = mirror
    # large enough for gdown to write a chunk (512 KiB) before the connection drops
    logs = torch.randint(0, 256, (1_500_000,), generator=torch.Generator().manual_seed(0))
    archive = zip_of({"dtd/base/seed1/MultiModalPromptLearner/model.pth.tar-5":
                      official_maple_file(2), "dtd/base/seed1/log.txt":
                      bytes(logs.to(torch.uint8).tolist())})
    publish(folder, MAPLE_FOLDER, {"dtd.zip": archive})
    server.cut_first[f"/{MAPLE_FOLDER}/dtd.zip"] = 1_200_000
    assert main(["download", "maple-b2n", "--retries", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "maple-b2n (dtd.zip): could not download" in err
    assert f"https://drive.google.com/drive/folders/{MAPLE_FOLDER}" in err
    kept = int(re.search(r"; (\d+) bytes kept, the next run resumes", err)[1])
    assert 0 < kept <= 1_200_000
    assert not store.downloaded(catalogue.find("maple-b2n"), tmp_path / "zoo")
    assert main(["download", "maple-b2n", "--retries", "0"]) == 0
    assert gets(server, f"/{MAPLE_FOLDER}/dtd.zip") == [None, None, f"bytes={kept}-"]
    got = (tmp_path / "zoo" / "maple-b2n" / "downloads" / "dtd.zip").read_bytes()
    assert got == archive


def test_a_file_changed_at_its_source_is_refused(mirror, tmp_path, capsys):
    folder, _ = mirror
    publish(folder, MAPLE_FOLDER, {"dtd.zip": maple_zip(1)})
    assert main(["download", "maple-b2n"]) == 0
    downloads = tmp_path / "zoo" / "maple-b2n" / "downloads"
    first = (downloads / "dtd.zip").read_bytes()
    publish(folder, MAPLE_FOLDER, {"dtd.zip": maple_zip(3)})  # other weights, same name
    (downloads / "dtd.zip").unlink()
    capsys.readouterr()
    assert main(["download", "maple-b2n"]) == 2
    err = capsys.readouterr().err
    assert "now gives a different file" in err and "sha256" in err
    assert not (downloads / "dtd.zip").exists() and (downloads / "dtd.zip.rejected").is_file()
    record = Records(tmp_path / "zoo" / "records.json").get("maple-b2n/dtd.zip")
    assert record["sha256"] == hashlib.sha256(first).hexdigest()
    # a file damaged on disk is fetched again (and then matches its record)
    publish(folder, MAPLE_FOLDER, {"dtd.zip": first})
    (downloads / "dtd.zip").write_bytes(b"damaged")
    assert main(["download", "maple-b2n"]) == 0
    assert (downloads / "dtd.zip").read_bytes() == first
    # accepting the change: forget the record, download again
    publish(folder, MAPLE_FOLDER, {"dtd.zip": maple_zip(3)})
    (downloads / "dtd.zip").unlink()
    assert main(["forget", "maple-b2n"]) == 0
    assert main(["download", "maple-b2n"]) == 0


def test_offline_and_manual_sources_end_in_one_line_with_the_manual_route(tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.setenv("ZOO_DIR", str(tmp_path / "zoo"))
    with serve(tmp_path / "empty") as server:  # answers 404 to everything
        monkeypatch.setenv("ZOO_MIRROR", server.url)
        assert main(["download", "coop-imagenet", "--retries", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "coop-imagenet" in err
    assert "https://drive.google.com/file/d/18ypxfd82RR0pizc5MM1ZWDYDk4j0BtPF/view" in err
    assert str(tmp_path / "zoo" / "coop-imagenet" / "downloads") in err
    assert main(["download", "promptsrc-b2n"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sharepoint.com" in err and "by hand" in err
    # what the user put there by hand is then checked, recorded and unpacked
    downloads = tmp_path / "zoo" / "promptsrc-b2n" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "dtd.zip").write_bytes(zip_of({"dtd/base/seed1/VLPromptLearner/"
                                                "model.pth.tar-20": b"x"}))
    assert main(["download", "promptsrc-b2n"]) == 0
    assert (tmp_path / "zoo" / "promptsrc-b2n" / "dtd" / "base" / "seed1").is_dir()


def test_the_catalogue_names_real_configs_datasets_and_sources():
    entries = catalogue.load()
    assert {"maple-b2n", "maple-xd", "vpt-b2n", "lp-b2n", "ivlp-b2n", "promptsrc-b2n",
            "promptsrc-xd", "promptsrc-few-shot", "coop-imagenet", "mvlpt-source",
            "promptkd-teachers"} <= set(entries)
    datasets = {p.stem for p in (catalogue.REPO / "configs" / "datasets").glob("*.yaml")}
    for entry in entries.values():
        assert set(entry.datasets) <= datasets, entry.name
        assert re.fullmatch(r"[\w-]+", entry.source) or entry.source.startswith("https://")
        if entry.published:
            base, novel, hm = (entry.published[k] for k in ("base", "novel", "hm"))
            assert abs(2 * base * novel / (base + novel) - hm) < 0.01, entry.name
    assert catalogue.find("maple-dg").name == "maple-xd"
    # evaluable entries point at configs of this repository; the others say why not
    assert entries["maple-b2n"].evaluable() is None
    assert "not among this repository's configs" in entries["promptkd-teachers"].evaluable()
    assert "not evaluated by themselves" in entries["mvlpt-source"].evaluable()


def test_readme_shows_the_catalogue_table(monkeypatch, capsys):
    monkeypatch.delenv("ZOO_CATALOGUE", raising=False)
    assert main(["table"]) == 0
    table = capsys.readouterr().out.strip()
    readme = (catalogue.REPO / "README.md").read_text()
    start = readme.index("<!-- zoo table: python -m scripts.zoo table -->\n")
    shown = readme[start:readme.index("<!-- end of zoo table -->")].split("\n", 1)[1].strip()
    assert shown == table, "README.md's table differs: paste python -m scripts.zoo table there"
    assert "| 78.55 | `python -m scripts.zoo eval maple-b2n --dataset imagenet` |" in table


DEMO_CATALOGUE = """
entries:
  demo-maple:
    method: MaPLe
    trainer: MaPLe
    protocols: [base2new]
    backbone: tiny
    config: demo_tiny
    load_epoch: 5
    shots: 16
    seeds: [1]
    datasets: [demo]
    source: {drive_folder: demo-maple-folder}
    layout: "{dataset}/base/seed{seed}"
    published: {base: 61.0, novel: 52.0, hm: 56.14, over: "the demo"}
    licence: MIT
    repository: https://example.org/demo
    from: this test
"""


def test_sweep_and_eval_put_a_release_beside_our_runs(mirror, tmp_path, capsys, monkeypatch):
    """The sweep evaluates a catalogue entry as a method (a download job, then each
    evaluation: zoo eval -> train.py with the official evaluation command); zoo eval prints
    ours beside the published numbers; results.py tables the release as zoo:<entry>/<cfg>."""
    from scripts import results, sweep

    folder, _ = mirror
    extra = tmp_path / "demo_catalogue.yaml"
    extra.write_text(DEMO_CATALOGUE)
    monkeypatch.setenv("ZOO_CATALOGUE", str(extra))
    monkeypatch.setenv("DATA", str(tmp_path / "data"))
    publish(folder, "demo-maple-folder", {"demo.zip": zip_of(
        {"demo/base/seed1/MultiModalPromptLearner/model.pth.tar-5": official_maple_file(4)})})
    out = tmp_path / "output"
    assert sweep.main(["base2new", "--methods", "zoo:demo-maple", "--datasets", "demo",
                       "--seeds", "1", "--output", str(out)]) == 0
    model = tmp_path / "zoo" / "demo-maple" / "demo" / "base" / "seed1"
    accuracies = {}
    for split in ("base", "new"):
        run = out / "base2new" / f"test_{split}" / "demo" / "shots_16" / "zoo:demo-maple" / \
            "demo_tiny" / "seed1"
        log = (run / "log.txt").read_text()
        assert str(model / "MultiModalPromptLearner" / "model.pth.tar-5") in log
        accuracies[split] = float(re.findall(r"\* accuracy: ([\d.]+)%", log)[-1])
    logs = sorted(out.rglob("log.txt*"))
    capsys.readouterr()
    # zoo eval finds both results (runs nothing again) and prints them beside the published
    assert main(["eval", "demo-maple", "--dataset", "demo", "--output", str(out)]) == 0
    assert sorted(out.rglob("log.txt*")) == logs
    text = capsys.readouterr().out
    for split, accuracy in accuracies.items():
        assert re.search(rf"demo +1  {split} +{accuracy:.2f}", text)
    hm = 2 * accuracies["base"] * accuracies["new"] / (accuracies["base"] + accuracies["new"])
    assert f"HM {hm:.2f}" in text
    assert "published (the demo): base 61.0  novel 52.0  hm 56.14" in text
    assert results.main([str(out)]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if "zoo:demo-maple/demo_tiny" in line)
    assert f"{accuracies['base']:.2f}" in row and f"{accuracies['new']:.2f}" in row
    summary = [line for line in table.splitlines() if line.startswith("| zoo:demo-maple")]
    assert any("61.00 / 52.00 / 56.14" in line for line in summary), table


def test_eval_refuses_what_it_cannot_run(mirror, tmp_path, capsys):
    argv = ["eval", "maple-b2n", "--root", str(tmp_path), "--dry-run"]
    assert main([*argv, "--dataset", "imagenet_r"]) == 2
    assert "covers imagenet, caltech101" in capsys.readouterr().err
    assert main([*argv, "--dataset", "dtd", "--seeds", "4"]) == 2
    assert "seeds [1, 2, 3], not [4]" in capsys.readouterr().err
    assert main(["eval", "promptkd-teachers", "--dataset", "dtd", "--root", "x"]) == 2
    assert "vit_l14_c2_ep20_batch8_4+4ctx.yaml" in capsys.readouterr().err
    # the official command, as reproduce_maple.sh writes it
    assert main([*argv, "--dataset", "dtd", "--seeds", "2", "--split", "new"]) == 0
    command = capsys.readouterr().out.split()
    for flag, value in (("--trainer", "MaPLe"), ("--load-epoch", "5"), ("--seed", "2"),
                        ("DATASET.SUBSAMPLE_CLASSES", "new"), ("DATASET.NUM_SHOTS", "16")):
        assert command[command.index(flag) + 1] == value
    assert command[command.index("--model-dir") + 1].endswith("maple-b2n/dtd/base/seed2")
    assert "--eval-only" in command


def test_few_shot_models_are_found_by_dataset_shots_and_seed(tmp_path, monkeypatch, capsys):
    """PromptSRC's few-shot release (SharePoint: put by hand), one folder per dataset holding
    <K>shot/seed<N>; eval's run folders are few_shot/<dataset>/zoo:<release>/<cfg>_<K>shots."""
    monkeypatch.setenv("ZOO_DIR", str(tmp_path / "zoo"))
    downloads = tmp_path / "zoo" / "promptsrc-few-shot" / "downloads"
    downloads.mkdir(parents=True)
    files = {f"{d}/{k}shot/seed{s}/VLPromptLearner/model.pth.tar-50": b"x"
             for d in ("dtd", "eurosat") for k in (1, 4) for s in (1, 2)}
    (downloads / "few_shot.zip").write_bytes(zip_of(files))
    assert main(["download", "promptsrc-few-shot"]) == 0
    capsys.readouterr()
    assert main(["path", "promptsrc-few-shot", "--dataset", "eurosat", "--seed", "2",
                 "--shots", "4"]) == 0
    found = Path(capsys.readouterr().out.strip())
    assert found == tmp_path / "zoo" / "promptsrc-few-shot" / "eurosat" / "4shot" / "seed2"
    assert main(["eval", "promptsrc-few-shot", "--dataset", "eurosat", "--seeds", "2",
                 "--shots", "4", "--root", str(tmp_path), "--output", "out", "--dry-run"]) == 0
    command = capsys.readouterr().out.split()
    assert command[command.index("--model-dir") + 1] == str(found)
    assert command[command.index("--output-dir") + 1] == \
        "out/few_shot/eurosat/zoo:promptsrc-few-shot/vit_b16_c2_ep50_batch4_4+4ctx_few_shot_4shots/seed2"
    assert command[command.index("--load-epoch") + 1] == "50"
    assert "DATASET.SUBSAMPLE_CLASSES" not in command


def test_list_filters_and_names_the_methods_without_a_release(capsys):
    assert main(["list", "--protocol", "dg"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["maple-xd", "promptsrc-xd", "coop-imagenet"]
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for method in ("CoCoOp", "KgCoOp", "ProGrad", "DePT"):
        assert f"(no release: {method};" in out


def test_sweep_jobs_of_a_release_wait_for_one_download(tmp_path, monkeypatch):
    from scripts import sweep

    monkeypatch.setenv("ZOO_DIR", str(tmp_path / "zoo"))
    method = sweep.resolve_method("zoo:maple-dg")
    jobs = sweep.protocol_jobs(["xd", "dg"], [method], ["dtd", "imagenet_a", "food101"],
                               [1, 2, 7], [], tmp_path / "out", ["TEST.FINAL_MODEL", "last"])
    names = [job.name for job in jobs]
    assert names.count("zoo/maple-xd/download") == 1  # shared by xd and dg
    evals = [job for job in jobs if job.name != "zoo/maple-xd/download"]
    assert sorted(job.name for job in evals) == sorted(
        f"zoo/maple-xd/{d}/16shots/seed{s}/all" for d in ("dtd", "food101", "imagenet_a")
        for s in (1, 2))  # seed 7 was not released
    for job in evals:
        assert job.after == ("zoo/maple-xd/download",)
        assert job.command[-3:] == ["--", "TEST.FINAL_MODEL", "last"]
        assert job.run_dir.parts[-5:-3] == ("evaluation", "zoo:maple-xd")
    with pytest.raises(SystemExit, match="no released model named 'nope'"):
        sweep.resolve_method("zoo:nope")
