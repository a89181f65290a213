"""Personalization on the device over real HTTP: samples in, a gated head, nothing out."""

import base64

import httpx
import numpy as np
import pytest
from support import agents as support

from edgetune.agent.limits import AgentLimits

auth = support.auth
LABELS = support.SPEC.labels


@pytest.fixture
def split_agent(start_agent, make_bundle):
    """An agent serving the tiny split model (untrained head: a device it does not fit)."""
    agent = start_agent()
    answer = httpx.put(f"{agent.url}/bundle", headers=auth(), timeout=30,
                       content=make_bundle("1.0.0", split=support.tiny_split_model()).read_bytes())  # fmt: skip
    assert answer.status_code == 200, answer.text
    return agent


def personalize(agent):
    return httpx.post(f"{agent.url}/personalize", headers=auth(), timeout=60)


def predictions(agent, pixels):
    return [
        httpx.post(
            f"{agent.url}/predict", content=support.png_bytes(p), headers=support.png_headers()
        ).json()["index"]  # fmt: skip
        for p in pixels
    ]


def test_a_device_that_the_model_does_not_fit_improves_on_its_own_samples(split_agent):
    x, y = support.pattern_images(48, seed=0)
    assert all(
        r.status_code == 201
        for r in support.post_samples(split_agent.url, x, [LABELS[i] for i in y])
    )
    x_new, y_new = support.pattern_images(30, seed=1)
    before = np.mean(np.array(predictions(split_agent, x_new)) == y_new)

    answer = personalize(split_agent)

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["installed"] and result["after"] > result["before"]
    assert result["n_holdout"] == 12 and result["head_version"] == 1
    after = np.mean(np.array(predictions(split_agent, x_new)) == y_new)
    assert after >= 0.9 and after > before  # unseen images: the personal head serves
    state = httpx.get(f"{split_agent.url}/health").json()["personalization"]
    assert state["head_version"] == 1 and state["previous_head_version"] == 0
    assert state["samples"]["zero"] == {"train": 12, "holdout": 4}
    assert state["last"]["after"] == result["after"]
    update = httpx.get(f"{split_agent.url}/head-update", headers=auth()).json()
    assert (update["n_samples"], update["shape"]) == (result["n_train"], [24, 3])
    delta = np.frombuffer(base64.b64decode(update["delta_kernel"]), "<f4")
    assert delta.size == 24 * 3 and np.abs(delta).max() > 0
    # rollback returns to the bundle's head
    back = httpx.post(f"{split_agent.url}/personalize/rollback", headers=auth())
    assert back.status_code == 200 and back.json()["head_version"] == 0
    assert np.mean(np.array(predictions(split_agent, x_new)) == y_new) == before


def test_a_head_trained_on_mislabelled_samples_is_refused_by_the_device_gate(split_agent):
    # Each label's samples show the next class, except every 4th (the held-out ones), which
    # are right: the head trained on them is worse where the device judges it.
    x, y = support.pattern_images(48, seed=0)
    by_class = [x[y == c] for c in range(3)]
    shown = [by_class[c if k % 4 == 3 else (c + 1) % 3][k] for c in range(3) for k in range(16)]
    support.post_samples(
        split_agent.url, np.stack(shown), [LABELS[c] for c in range(3) for _ in range(16)]
    )
    served_before = predictions(split_agent, x[:9])

    result = personalize(split_agent).json()

    assert not result["installed"] and result["after"] < result["before"], result["reason"]
    assert "refused" in result["reason"]
    assert httpx.get(f"{split_agent.url}/health").json()["personalization"]["head_version"] == 0
    assert predictions(split_agent, x[:9]) == served_before
    # the trained head still counts for federated averaging, marked as refused here
    update = httpx.get(f"{split_agent.url}/head-update", headers=auth()).json()
    assert update["metrics"]["installed"] is False and update["head_version"] == 0


def test_bad_samples_and_too_few_are_refused_with_the_reason(start_agent, make_bundle, split_agent):
    png = support.png_bytes(support.pattern_images(1, 0)[0][0])
    post = lambda **kw: httpx.post(f"{split_agent.url}/samples", **kw)  # noqa: E731
    headers = {**auth(), **support.png_headers()}

    assert post(params={"label": "seven"}, content=png, headers=headers).status_code == 422
    assert post(content=png, headers=headers).status_code == 400
    assert (
        post(params={"label": "zero"}, content=b"not an image", headers=headers).status_code == 400
    )
    assert (
        post(params={"label": "zero"}, content=png, headers=support.png_headers()).status_code
        == 401
    )
    assert (
        post(
            params={"label": "zero"}, content=png, headers={**headers, "X-Label": "one"}
        ).status_code
        == 201
    )
    too_few = personalize(split_agent)
    assert too_few.status_code == 422
    assert "at least 4 samples in each of at least 2 classes" in too_few.json()["detail"]
    assert "zero=1" in too_few.json()["detail"]
    plain = start_agent("plain")
    httpx.put(f"{plain.url}/bundle", content=make_bundle("1.0.0").read_bytes(), headers=auth())
    refused = httpx.post(
        f"{plain.url}/samples", params={"label": "zero"}, content=png, headers=headers
    )
    assert refused.status_code == 409 and "no split model" in refused.json()["detail"]


def test_the_store_keeps_its_limits_dropping_the_oldest(start_agent, make_bundle):
    agent = start_agent(limits=AgentLimits(max_samples=5))
    httpx.put(f"{agent.url}/bundle", headers=auth(),
              content=make_bundle("1.0.0", split=support.tiny_split_model()).read_bytes())  # fmt: skip
    x, y = support.pattern_images(8, seed=2)

    answers = support.post_samples(agent.url, x, [LABELS[i] for i in y])

    assert [a.json()["dropped"] for a in answers] == [0] * 5 + [1] * 3
    state = httpx.get(f"{agent.url}/health").json()["personalization"]
    assert state["samples_total"] == 5 and len(list((agent.state_dir / "samples").iterdir())) == 5


def test_no_route_ever_returns_a_stored_sample(split_agent):
    x, y = support.pattern_images(24, seed=3)
    sent = [support.png_bytes(p) for p in x]
    support.post_samples(split_agent.url, x, [LABELS[i] for i in y])
    personalize(split_agent)
    routes = {(m, r.path) for r in split_agent.app.routes for m in getattr(r, "methods", ())}
    # A new route must be added here on purpose, and so be checked.
    assert routes == {("PUT", "/bundle"), ("POST", "/rollback"), ("GET", "/health"),
                      ("POST", "/predict"), ("POST", "/samples"), ("POST", "/personalize"),
                      ("POST", "/personalize/rollback"), ("GET", "/head-update")}  # fmt: skip
    secrets = [*sent, *(p.tobytes() for p in x)]
    secrets += [base64.b64encode(s) for s in list(secrets)]
    for method, path in sorted(routes):
        answer = httpx.request(method, f"{split_agent.url}{path}", content=sent[0],
                               params={"label": "zero"}, timeout=60,
                               headers={**auth(), **support.png_headers()})  # fmt: skip
        for secret in secrets:
            assert secret not in answer.content, (method, path)
        assert len(answer.content) < 8 * 1024, (method, path)  # metrics, not data
