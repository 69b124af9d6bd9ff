from pathlib import Path

import pytest

from emoloom.core.io import read_jsonl, write_jsonl
from emoloom.core.resources import ENV_VAR, MissingResourceError, raw_root, resource_path


def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_jsonl(path, rows())
    assert list(read_jsonl(path)) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"x.jsonl:2: not a JSON object"):
        list(read_jsonl(path))


def test_missing_resource_says_what_and_where(tmp_path):
    with pytest.raises(MissingResourceError) as err:
        resource_path(tmp_path, "nrc_vad")
    msg = str(err.value)
    assert str(tmp_path / "nrc_vad" / "NRC-VAD-Lexicon.txt") in msg
    assert "no redistribution" in msg and "docs/data.md" in msg


def test_env_overrides_configured_root(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert raw_root("some/where") == Path("some/where")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert raw_root("some/where") == tmp_path
