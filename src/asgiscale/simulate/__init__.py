"""`asgiscale simulate`: replay a traffic trace through the scaling policy before it goes live.

`trace` reads the offered load (CSV, a `/status` history, or a built-in shape); `model` is the
discrete-time cluster the policy (`asgiscale.policy`, the code the runtime runs) drives;
`policies` builds the policies to compare from the config or from manifests; `report` and
`cli` are the I/O shell.
"""
