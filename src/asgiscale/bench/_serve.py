"""The app under test: `python -m asgiscale.bench._serve SETTINGS_JSON`, started by `asgiscale bench`.

The settings come from the project's own sources (config file, `ASGISCALE_*`), as for
`asgiscale run`, so the app is measured as it is configured; the bench then fixes what a
measurement needs: a fixed worker count (self-scaling off), its inherited listening socket, a
loopback admin server to read the workers from, and no access log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from asgiscale.config import EXIT_USAGE, Config, ConfigError


def main(argv: list[str]) -> int:
    settings = json.loads(argv[0])
    fixed = settings.pop("fixed")
    try:
        config = Config.from_sources(settings, env=os.environ)
        config = dataclasses.replace(config, min_workers=None, max_workers=None, **fixed)
        config.check_paths()
    except ConfigError as exc:
        print(f"asgiscale: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from asgiscale.runtime.supervisor import Supervisor

    return Supervisor(config).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
