"""Fleet files: valid ones load with resolved token references; bad ones fail in one line."""

import textwrap

import pytest

from edgetune.errors import EdgetuneError
from edgetune.fleet import FleetDevice, load_fleet, resolve_token, select


def write_fleet(tmp_path, body):
    path = tmp_path / "fleet.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_fleet_loads_and_tokens_resolve(tmp_path, monkeypatch):
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "cam-2").write_text("file-token\n")
    monkeypatch.setenv("CAM1_TOKEN", "env-token")
    path = write_fleet(tmp_path, """
        devices:
          - {name: cam-1, url: "http://10.0.0.1:8470/", token_ref: "env:CAM1_TOKEN", tags: [store-1]}
          - {name: cam-2, url: "https://cam2.local", token_ref: "file:tokens/cam-2"}
    """)  # fmt: skip

    cam1, cam2 = load_fleet(path)

    assert cam1 == FleetDevice("cam-1", "http://10.0.0.1:8470", "env:CAM1_TOKEN", ("store-1",))
    assert cam2.token_ref == f"file:{tmp_path / 'tokens' / 'cam-2'}"
    assert (resolve_token(cam1), resolve_token(cam2)) == ("env-token", "file-token")
    assert select([cam1, cam2], ["store-1"]) == [cam1]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: cam, token_ref: 'env:T'}", r"devices\[1\] \(cam\): missing field 'url'"),
        ("{url: 'http://h', token_ref: 'env:T'}", r"devices\[1\]: missing field 'name'"),
        (
            "{name: cam, url: 'http://h', token_ref: 'vault:x'}",
            r"devices\[1\] \(cam\): field 'token_ref'='vault:x'; accepted: env:VARIABLE or file:PATH",
        ),
        ("{name: cam-0, url: 'http://h', token_ref: 'env:T'}", r"name 'cam-0' is used twice"),
        (
            "{name: cam, url: 'ftp://h', token_ref: 'env:T'}",
            r"field 'url'='ftp://h'; expected http",
        ),
        ("{name: cam, url: 'http://h', token_ref: 'env:T', token: x}", r"unknown field 'token'"),
    ],
    ids=[
        "missing-url",
        "missing-name",
        "token-scheme",
        "duplicate-name",
        "url-scheme",
        "unknown-field",
    ],
)
def test_bad_entry_is_a_one_line_error_naming_file_and_field(tmp_path, entry, message):
    path = write_fleet(tmp_path, f"""
        devices:
          - {{name: cam-0, url: 'http://h0', token_ref: 'env:T'}}
          - {entry}
    """)  # fmt: skip

    with pytest.raises(EdgetuneError, match=message) as error:
        load_fleet(path)

    assert str(error.value).startswith(f"{path}: devices[1]") and "\n" not in str(error.value)


def test_empty_or_missing_fleet_file_names_the_file(tmp_path):
    with pytest.raises(
        EdgetuneError, match="fleet.yaml: expected a non-empty list under 'devices'"
    ):
        load_fleet(write_fleet(tmp_path, "devices: []\n"))
    with pytest.raises(EdgetuneError, match="nowhere.yaml: file not found"):
        load_fleet(tmp_path / "nowhere.yaml")


def test_unresolvable_tokens_say_which_device_and_source(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)

    with pytest.raises(EdgetuneError, match="device a: environment variable NOPE is not set"):
        resolve_token(FleetDevice("a", "http://h", "env:NOPE"))
    with pytest.raises(EdgetuneError, match=f"device b: cannot read token file {tmp_path}/gone"):
        resolve_token(FleetDevice("b", "http://h", f"file:{tmp_path}/gone"))


def test_ca_file_is_resolved_beside_the_fleet_file_and_must_exist(tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = write_fleet(tmp_path, """
        devices:
          - {name: gate, url: "https://10.0.0.2:8470", token_ref: "env:T", ca_file: ca.pem}
    """)  # fmt: skip

    assert load_fleet(path)[0].ca_file == str(tmp_path / "ca.pem")

    for url, ca, message in [
        ("https://h", "missing.pem", "field 'ca_file'='missing.pem'; no such file"),
        ("http://h", "ca.pem", "a CA file needs an https:// url"),
    ]:
        path.write_text(f"devices: [{{name: g, url: '{url}', token_ref: 'env:T', ca_file: {ca}}}]")
        with pytest.raises(EdgetuneError, match=message):
            load_fleet(path)
