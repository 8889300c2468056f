from pathlib import Path

from asgiscale.config import settings_markdown

DOCS = Path(__file__).parent.parent / "docs"


def test_settings_reference_is_current() -> None:
    assert (DOCS / "settings.md").read_text() == settings_markdown(), "regenerate docs/settings.md (see its header)"
