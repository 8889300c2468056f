import asgiscale


def test_public_api_is_pinned() -> None:
    assert asgiscale.__all__ == sorted(asgiscale.__all__)
    assert asgiscale.__all__ == ["Config", "ConfigError", "__version__", "run"]
    for name in asgiscale.__all__:
        assert hasattr(asgiscale, name)
