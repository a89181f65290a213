"""Shared by tests/agent and tests/components/deploy: a real tiny int8 model, keys, live agents.

One module, imported once, so the model is converted once per session however many test
folders use it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

import edgetune  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow is imported
from edgetune import bundle, signing
from edgetune.agent.limits import AgentLimits
from edgetune.manifest import sign_rollback_order
from edgetune.preprocessing import PreprocessSpec

TOKEN = "test-token-0123456789-abcdefghijkl"  # 33 bytes: the agent wants >= 32
SPEC = PreprocessSpec(
    height=8, width=8, channels=1, scale=1 / 255, offset=0.0, labels=("zero", "one", "two")
)
N_SAMPLES = 6


def _int8(model: Any) -> bytes:
    """A full-integer int8 .tflite (int8 I/O) of a tf_keras model, calibrated on noise."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.random((1, 8, 8, 1), dtype=np.float32)] for _ in range(32)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Statistics for quantized inputs...": expected here
        return converter.convert()


@functools.cache
def tiny_int8_model(seed: int = 0) -> bytes:
    """A conv + dense classifier, 8x8x1 to 3 classes, full-integer int8 with int8 I/O.

    Another `seed` gives another model (other weights, so another sha256).
    """
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.layers.Input((SPEC.height, SPEC.width, SPEC.channels)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(len(SPEC.labels), activation="softmax"),
        ]
    )
    return _int8(model)


@dataclass(frozen=True)
class SplitModel:
    """A classifier as convert ships it: the full int8 file, its int8 extractor, its head."""

    model: bytes
    extractor: bytes
    head: bytes

    @property
    def files(self) -> dict[str, bytes]:
        from edgetune.split import EXTRACTOR_FILE, HEAD_FILE

        return {EXTRACTOR_FILE: self.extractor, HEAD_FILE: self.head}


@functools.cache
def tiny_split_model(seed: int = 0) -> SplitModel:
    """8x8x1 → conv → 24 random ReLU features → 3-class softmax head, untrained.

    Random features still separate simple patterns, so a head trained on them learns.
    """
    import tf_keras as keras

    from edgetune.split import Head

    keras.utils.set_random_seed(seed)
    image = keras.Input((SPEC.height, SPEC.width, SPEC.channels))
    x = keras.layers.Conv2D(6, 3, activation="relu")(image)
    features = keras.layers.Dense(24, activation="relu")(keras.layers.Flatten()(x))
    head = keras.layers.Dense(len(SPEC.labels), activation="softmax", name="head")
    model = keras.Model(image, head(features))
    kernel, bias = (w.astype(np.float32) for w in head.get_weights())
    return SplitModel(
        _int8(model), _int8(keras.Model(image, features)), Head(kernel, bias).to_bytes()
    )


def litert_classes(model_bytes: bytes, pixels: np.ndarray) -> np.ndarray:
    """What the build machine does: the class LiteRT gives each uint8 image."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    classes = []
    for image in pixels:
        x = image[np.newaxis].astype(np.float32) * SPEC.scale + SPEC.offset
        q = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q)
        interpreter.invoke()
        classes.append(int(np.argmax(interpreter.get_tensor(out["index"]))))
    return np.array(classes)


def smoke_pixels() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (N_SAMPLES, 8, 8, 1), dtype=np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0], mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedAgent:
    """A real agent (the FastAPI app under uvicorn) on a loopback port, in a thread."""

    def __init__(
        self,
        state_dir: Path,
        trusted_key: Path,
        token: str = TOKEN,
        limits: AgentLimits | None = None,
        **app_options: Any,
    ) -> None:
        """Runs `create_app(...)` with the agent's real uvicorn settings (`uvicorn_config`)."""
        import uvicorn

        from edgetune.agent.runner import uvicorn_config
        from edgetune.agent.server import create_app

        limits = limits or AgentLimits()
        self.state_dir = state_dir
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        tls = {k: app_options.pop(k) for k in ("tls_cert", "tls_key") if k in app_options}
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._sock.getsockname()[1]}"
        app = create_app(state_dir, trusted_key, token, limits=limits, **app_options)
        self.app = app
        self._server = uvicorn.Server(uvicorn_config(app, limits, log_level="warning", **tls))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"agent at {self.url} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


def start_cli_agent(
    state_dir: Path,
    trusted_key: Path,
    token_file: Path,
    *extra: str,
    preexec_fn: Callable[[], None] | None = None,
    stderr: Any = subprocess.PIPE,
    scheme: str = "http",
    verify: Any = True,
) -> tuple[subprocess.Popen, str]:
    """`python -m edgetune.cli agent serve ...` as a subprocess; returns it and its URL once up.

    The listening socket is bound here and inherited (`--fd`), so the port cannot be lost.
    `preexec_fn` runs in the child before the agent starts (e.g. resource limits).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        cmd = [sys.executable, "-m", "edgetune.cli", "agent", "serve", "--fd", str(sock.fileno()),
               "--state-dir", str(state_dir), "--trusted-key", str(trusted_key),
               "--token-file", str(token_file), *extra]  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=stderr, pass_fds=(sock.fileno(),),
            preexec_fn=preexec_fn,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(f"{url}/health", timeout=1, verify=verify)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    err = proc.communicate()[1]
    raise RuntimeError(f"CLI agent did not start: {(err or b'').decode()[-2000:]}")


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path
    other_private: Path  # a key the agents do not trust


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("keys")
    private, public = signing.generate_keypair(root / "trusted")
    other, _ = signing.generate_keypair(root / "other")
    return Keys(private, public, other)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.tflite"
    path.write_bytes(tiny_int8_model())
    return path


@pytest.fixture(scope="session")
def other_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model: same shapes, other weights (what another MLflow store might hold)."""
    path = tmp_path_factory.mktemp("model") / "other.tflite"
    path.write_bytes(tiny_int8_model(seed=1))
    return path


@pytest.fixture(scope="session")
def smoke_set(model_file: Path) -> tuple[np.ndarray, np.ndarray]:
    pixels = smoke_pixels()
    return pixels, litert_classes(model_file.read_bytes(), pixels)


@pytest.fixture
def make_bundle(
    tmp_path: Path, keys: Keys, model_file: Path, smoke_set: tuple[np.ndarray, np.ndarray]
) -> Callable[..., Path]:
    """make_bundle(version, disagree=False, key=None) -> a signed bundle file."""

    def make(
        version: str = "1.0.0",
        *,
        disagree: bool = False,
        key: Path | None = None,
        sequence: int | None = None,
        model: Path | None = None,
        split: SplitModel | None = None,
        personal_head: str = "reset",
    ) -> Path:
        pixels, expected = smoke_set
        if split is not None:  # the split model's own full int8 file is the served model
            model = tmp_path / f"split-{hashlib.sha256(split.model).hexdigest()[:8]}.tflite"
            model.write_bytes(split.model)
        if model is not None:  # what the other model gives on this machine
            expected = litert_classes(model.read_bytes(), pixels)
        if disagree:  # what a model broken on the device would look like
            expected = (expected + 1) % len(SPEC.labels)
        tag = f"{'-bad' if disagree else ''}{'-' + model.stem if model else ''}-{sequence or ''}"
        return bundle.build_bundle(
            tmp_path / f"bundle-{version}{tag}.tar",
            model or model_file,
            pixels,
            expected,
            version=version,
            spec=SPEC,
            metrics={"accuracy": 0.9},
            mlflow_run_id="run-123",
            data_fingerprint="fp-abc",
            private_key=key or keys.private,
            sequence=sequence,
            split=split.files if split else None,
            personal_head=personal_head,
        )

    return make


@pytest.fixture
def start_agent(tmp_path: Path, keys: Keys) -> Iterator[Callable[..., ThreadedAgent]]:
    """start_agent(name) -> a running agent with its own state folder; stopped at teardown."""
    agents: list[ThreadedAgent] = []

    def start(name: str = "agent", token: str = TOKEN, **options: Any) -> ThreadedAgent:
        agent = ThreadedAgent(tmp_path / name, keys.public, token, **options)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()


def auth(token: str = TOKEN) -> dict[str, str]:
    """The push header; no header at all for an empty token."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def rollback_order(
    keys: Keys, version: str, model_sha256: str, sequence: int | None = None
) -> bytes:
    """The body of a signed POST /rollback returning to `version`."""
    return sign_rollback_order(
        signing.load_private_key(keys.private), version, model_sha256, sequence
    )


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for 127.0.0.1, made with `cryptography`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgetune agent")])
    now = datetime.datetime.now(datetime.UTC)
    loopback = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(loopback, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "agent.crt", directory / "agent.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                         serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    key_path.chmod(0o600)
    return cert_path, key_path


def png_headers() -> dict[str, str]:
    return {"Content-Type": "image/png"}


def env_without_token() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "EDGETUNE_AGENT_TOKEN"}


def pattern_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` 8x8 grey images, labels 0..2 in turn: a bright top, bottom or left band on noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(SPEC.labels)
    x = rng.integers(0, 60, (n, 8, 8, 1), dtype=np.uint8)
    for image, label in zip(x, y, strict=True):
        value = rng.integers(160, 256)
        if label == 0:
            image[:3] = value
        elif label == 1:
            image[5:] = value
        else:
            image[:, :3] = value
    return x, y


def post_samples(url: str, pixels: np.ndarray, labels: list[str]) -> list[httpx.Response]:
    """POST /samples for each image (PNG) with its label name."""
    with httpx.Client(timeout=30) as client:
        return [
            client.post(
                f"{url}/samples",
                params={"label": label},
                content=png_bytes(p),
                headers={**auth(), **png_headers()},
            )  # fmt: skip
            for p, label in zip(pixels, labels, strict=True)
        ]
