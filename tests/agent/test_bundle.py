"""Bundles: what is signed, and every way a changed bundle is refused."""

import hashlib
import json
import stat
import tarfile

import numpy as np
import pytest
from support import agents as support

from edgetune import bundle, code_version, signing
from edgetune.bundle import BundleRejected
from edgetune.errors import EdgetuneError


def members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def test_signed_bundle_opens_with_its_manifest_and_samples(
    make_bundle, keys, model_file, smoke_set
):
    opened = bundle.open_bundle(make_bundle("1.2.0"), keys.public)

    m = opened.manifest
    assert (m.version, m.labels, m.spec) == ("1.2.0", support.SPEC.labels, support.SPEC)
    assert m.files["model.tflite"].sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert set(m.files) == {"model.tflite", "samples.npz"}
    assert (m.mlflow_run_id, m.data_fingerprint, m.code_version) == (
        "run-123",
        "fp-abc",
        code_version(),
    )
    assert m.smoke_min_agreement == 1.0 and m.metrics["accuracy"] == 0.9
    pixels, expected = opened.samples()
    np.testing.assert_array_equal(pixels, smoke_set[0])
    np.testing.assert_array_equal(expected, smoke_set[1])


def test_bundle_folder_written_by_the_agent_verifies_again(make_bundle, keys, tmp_path):
    bundle.open_bundle(make_bundle(), keys.public).write_to(tmp_path / "v")

    assert bundle.open_bundle(tmp_path / "v", keys.public).version == "1.0.0"
    (tmp_path / "v" / "model.tflite").write_bytes(b"swapped on disk")
    with pytest.raises(BundleRejected, match="model.tflite"):
        bundle.open_bundle(tmp_path / "v", keys.public)


def flip_model_byte(parts):
    model = bytearray(parts["model.tflite"])
    model[len(model) // 2] ^= 0xFF
    return {**parts, "model.tflite": bytes(model)}


def edit_manifest(parts):
    manifest = json.loads(parts["manifest.json"])
    manifest["smoke_min_agreement"] = 0.0
    return {**parts, "manifest.json": json.dumps(manifest).encode()}


def add_file(parts):
    return {**parts, "notes.txt": b"unlisted"}


def drop_samples(parts):
    return {k: v for k, v in parts.items() if k != "samples.npz"}


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (flip_model_byte, "model.tflite: sha256 does not match"),
        (edit_manifest, "manifest.json: signature does not verify"),
        (add_file, "not listed in the manifest: notes.txt"),
        (drop_samples, "missing: samples.npz"),
    ],
)
def test_changed_bundle_is_refused_with_the_reason(make_bundle, keys, tamper, reason):
    data = bundle.pack_tar(tamper(members(make_bundle())))

    with pytest.raises(BundleRejected, match=reason):
        bundle.open_bundle(data, keys.public)


def test_bundle_signed_by_another_key_is_refused(make_bundle, keys):
    with pytest.raises(BundleRejected, match="does not verify"):
        bundle.open_bundle(make_bundle(key=keys.other_private), keys.public)


@pytest.mark.parametrize("name", ["../evil", "/etc/evil", "sub/model.tflite"])
def test_member_outside_the_bundle_is_refused(make_bundle, keys, name):
    data = bundle.pack_tar({**members(make_bundle()), name: b"x"})

    with pytest.raises(BundleRejected, match="unsafe member|not a flat file name"):
        bundle.open_bundle(data, keys.public)


def test_signed_but_malformed_manifest_is_refused(keys):
    key = signing.load_private_key(keys.private)
    manifest = b'{"created": "2024-01-01T00:00:00+00:00"}'
    data = bundle.pack_tar({"manifest.json": manifest, "manifest.sig": key.sign(manifest)})

    with pytest.raises(BundleRejected, match="missing field 'version'|preprocessing"):
        bundle.open_bundle(data, keys.public)


def test_not_a_tar_is_refused(keys):
    with pytest.raises(BundleRejected, match="not an uncompressed tar"):
        bundle.open_bundle(b"\x1f\x8b gzip or garbage" * 40, keys.public)


def test_build_refuses_samples_that_do_not_match_the_spec(tmp_path, keys, model_file):
    with pytest.raises(EdgetuneError, match=r"uint8 \[N, 8, 8, 1\]"):
        bundle.build_bundle(
            tmp_path / "b.tar", model_file, np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2, int),
            version="1", spec=support.SPEC, metrics={}, mlflow_run_id=None,
            data_fingerprint=None, private_key=keys.private,
        )  # fmt: skip
    assert not (tmp_path / "b.tar").exists()


def test_keygen_is_idempotent_and_keeps_the_secret_private(tmp_path):
    private, public = signing.generate_keypair(tmp_path)
    before = private.read_bytes()

    assert signing.generate_keypair(tmp_path) == (private, public)
    assert private.read_bytes() == before
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    signing.generate_keypair(tmp_path, force=True)
    assert private.read_bytes() != before


def test_keygen_refuses_half_a_pair(tmp_path):
    signing.generate_keypair(tmp_path)
    (tmp_path / "signing.pub").unlink()

    with pytest.raises(EdgetuneError, match="signing.key exists without its pair"):
        signing.generate_keypair(tmp_path)


def test_key_loading_errors_name_the_file(tmp_path, keys):
    not_a_key = tmp_path / "junk.pem"
    not_a_key.write_text("hello")

    with pytest.raises(EdgetuneError, match="junk.pem: not a PEM public key"):
        signing.load_public_key(not_a_key)
    with pytest.raises(EdgetuneError, match="missing.pem: cannot read key file"):
        signing.load_private_key(tmp_path / "missing.pem")
    with pytest.raises(EdgetuneError, match="signing.key: not a PEM public key"):
        signing.load_public_key(keys.private)


def test_peek_manifest_reads_the_version_without_a_key(make_bundle):
    assert bundle.peek_manifest(make_bundle("3.1.4")).version == "3.1.4"
    assert bundle.peek_manifest(make_bundle().read_bytes()).version == "1.0.0"


def sign_manifest_changed(keys, make_bundle, change):
    parts = members(make_bundle())
    manifest = json.loads(parts["manifest.json"])
    change(manifest)
    data = json.dumps(manifest).encode()
    key = signing.load_private_key(keys.private)
    return bundle.pack_tar({**parts, "manifest.json": data, "manifest.sig": key.sign(data)})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m.update(version="1.0.0\n"), "field 'version'='1.0.0\\\\n'; must match pattern"),
        (
            lambda m: m.update(rollback_to="0.1"),
            "unknown field 'rollback_to'; accepted: version, sequence",
        ),
        (lambda m: m.update(smoke_min_agreement=1.5), "field 'smoke_min_agreement'=1.5"),
        (lambda m: m["files"]["model.tflite"].update(bytes="12"), "files.model.tflite.bytes"),
        (lambda m: m["files"].pop("samples.npz"), "must list model.tflite, samples.npz"),
        (lambda m: m.update(labels=["a", "b", "c"]), "labels differ"),
    ],
    ids=["version-newline", "unknown-field", "agreement", "bytes-type", "required", "labels"],
)
def test_signed_manifest_with_a_bad_field_is_refused_in_one_line(keys, make_bundle, change, reason):
    data = sign_manifest_changed(keys, make_bundle, change)

    with pytest.raises(BundleRejected, match=reason) as error:
        bundle.open_bundle(data, keys.public)
    assert str(error.value).startswith("manifest.json: ") and "\n" not in str(error.value)


def test_firmware_sources_ship_signed_beside_the_model(tmp_path, keys, model_file, smoke_set):
    from edgetune import firmware

    firmware.export(model_file, support.SPEC, tmp_path / "fw")
    extra = firmware.read_sources(tmp_path / "fw")
    assert sorted(extra) == [firmware.SOURCE_FILE, firmware.HEADER_FILE]
    assert firmware.read_sources(tmp_path) == {}
    path = bundle.build_bundle(
        tmp_path / "b.tar", model_file, *smoke_set, version="1", spec=support.SPEC, metrics={},
        mlflow_run_id=None, data_fingerprint=None, private_key=keys.private, extra_files=extra,
    )  # fmt: skip

    opened = bundle.open_bundle(path, keys.public)
    assert {n: opened.files[n] for n in extra} == extra
    sha = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert f'EDGETUNE_MODEL_SHA256 "{sha}"' in extra[firmware.HEADER_FILE].decode()
    with pytest.raises(EdgetuneError, match=r"\['model.tflite'\]: names taken"):
        bundle.build_bundle(
            tmp_path / "c.tar", model_file, *smoke_set, version="1", spec=support.SPEC,
            metrics={}, mlflow_run_id=None, data_fingerprint=None, private_key=keys.private,
            extra_files={"model.tflite": b"x"},
        )  # fmt: skip


def test_the_split_model_ships_signed_and_the_manifest_says_which_file_is_which(make_bundle, keys):
    split = support.tiny_split_model()

    opened = bundle.open_bundle(
        make_bundle("2.0.0", split=split, personal_head="keep"), keys.public
    )

    entry = opened.manifest.split
    assert (entry.extractor, entry.head, entry.personal_head) == (
        "extractor.tflite",
        "head.npz",
        "keep",
    )
    assert (entry.embedding_dim, entry.classes) == (24, 3)
    assert opened.files["extractor.tflite"] == split.extractor
    assert opened.files["head.npz"] == split.head
    assert opened.manifest.files["head.npz"].sha256 == hashlib.sha256(split.head).hexdigest()


def test_a_bundle_without_a_split_model_has_none_and_a_bad_flag_is_refused(make_bundle):
    assert bundle.peek_manifest(make_bundle("2.1.0")).split is None
    with pytest.raises(EdgetuneError, match="personal_head='later'; accepted: keep, reset"):
        make_bundle("2.2.0", split=support.tiny_split_model(), personal_head="later")
