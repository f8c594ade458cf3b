"""Write tests/clip/fixtures/open_clip_reference.pt: open_clip's own features of the full-size
reference models (open_clip's constructors and forward passes, deterministic weights from
``open_clip_models.weights``), which test_open_clip_reference.py compares ours with.

    python -m tests.clip.make_open_clip_reference

Run it again after changing the weight recipe or open_clip's version (requirements.txt).
"""

from __future__ import annotations

import open_clip
import torch

from clip.backbones import fingerprint
from tests.clip import open_clip_models as models


def reference(name: str) -> dict[str, torch.Tensor]:
    model = models.create(name, models.REFERENCE_MODELS[name])
    size = model.visual.image_size
    image = models.reference_image(size[0] if isinstance(size, tuple) else size)
    tokens = open_clip.get_tokenizer(name)(models.REFERENCE_TEXTS)
    with torch.no_grad():
        features = {"image": model.encode_image(image), "text": model.encode_text(tokens)}
    # clones: a view would store its whole storage
    return {"fingerprint": fingerprint(model), "tokens": tokens.clone(),
            **{k: v.clone() for k, v in features.items()}}


def main() -> None:
    data = {"open_clip": str(open_clip.__version__), "torch": str(torch.__version__),
            **{name: reference(name) for name in models.REFERENCE_MODELS}}
    models.REFERENCE_FILE.parent.mkdir(exist_ok=True)
    torch.save(data, models.REFERENCE_FILE)
    print(f"wrote {models.REFERENCE_FILE}")


if __name__ == "__main__":
    main()
