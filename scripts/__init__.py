"""Protocol tools: the sweep runner, the result tables and the log reader they share."""
