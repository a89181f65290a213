"""The command line: `edgetune params`, and bad run parameters stopping a run before it starts."""

from __future__ import annotations

import pytest
from PIL import Image

from edgetune import cli
from edgetune.pipelines import local_run
from edgetune.pipelines.parameters import DECLARED, table
from edgetune.signing import generate_keypair


def test_params_lists_every_parameter_once(capsys):
    assert cli.main(["params"]) == 0
    lines = capsys.readouterr().out.splitlines()

    assert lines[0].split() == ["parameter", "type", "default", "range", "help"]
    names = [line.split()[0] for line in lines[1:]]
    assert [n for n in names if "." not in n] == list(DECLARED)
    assert len(names) == len(set(names))


def test_params_as_markdown_is_the_readme_table(capsys):
    assert cli.main(["params", "--format", "markdown"]) == 0
    assert capsys.readouterr().out == table(markdown=True)


@pytest.fixture
def nothing_starts(monkeypatch, tmp_path):
    """Fails the test if a run gets as far as starting agents or the pipeline (and MLflow)."""

    def started(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(local_run, "start_local_fleet", started)
    monkeypatch.setattr(local_run, "run_pipeline", started)
    monkeypatch.chdir(tmp_path)
    for label in ("cat", "dog"):  # a folder the quick data check accepts: 2 classes, 5 images each
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(5):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / "photos" / label / f"{i}.png")
    return tmp_path


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("target_sparsity=1.5", "pipeline parameter target_sparsity=1.5; accepted: a number in [0, 1)"),
        ("head_epochs=three", "pipeline parameter head_epochs='three'; accepted: an integer >= 0"),
        ("val_fraction=0.9", "pipeline parameters: ingest val_fraction + test_fraction = 1.05; "
         "must be < 1 to leave training data"),
        ("min_per_class=1", "pipeline parameter min_per_class=1; accepted: an integer >= 2"),
        ("data_uri=", "pipeline parameter data_uri=''; accepted: a non-empty string"),
        ("data_uri=missing", "pipeline parameter data_uri='missing': no such file or folder"),
        ("data_uri=ftp://", "pipeline parameter data_uri='ftp://': names no bucket or path"),
        ("tracking_uri=redis://x", "pipeline parameter tracking_uri='redis://x'; accepted: empty "
         "(the local default), a path, or a URI with scheme file, sqlite, http, https, postgresql, "
         "mysql, mssql, databricks, databricks-uc, uc"),
        ("fleet_file=fleet.yaml", "pipeline parameter fleet_file='fleet.yaml': no such file"),
        ("zoo_file=zoo.yaml", "pipeline parameter zoo_file='zoo.yaml': no such file"),
        ("tracking_uri=sqlite:///nope/m.db", "pipeline parameter tracking_uri='sqlite:///nope/m.db': "
         "folder nope does not exist"),
        ("head_epoch=2", "unknown pipeline parameter 'head_epoch'; accepted: "),
    ],
)  # fmt: skip
def test_a_bad_value_exits_2_with_one_line_before_anything_starts(
    nothing_starts, capsys, setting, message
):
    code = cli.main(["local-run", "--set", "data_uri=photos", "--set", setting])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"edgetune: error: {message}")
    assert err.count("\n") == 1


def test_submit_refuses_a_bad_value_before_contacting_the_host(nothing_starts, capsys):
    package = nothing_starts / "pipeline.yaml"
    package.write_text("{}")

    code = cli.main(
        ["submit", "--host", "http://127.0.0.1:9", "--package", str(package),
         "--set", "data_uri=s3://bucket/photos", "--set", "min_accuracy=95"]
    )  # fmt: skip

    assert code == 2
    assert capsys.readouterr().err == (
        "edgetune: error: pipeline parameter min_accuracy=95; accepted: a number in [0, 1]\n"
    )


def test_a_run_that_may_deploy_needs_a_signing_key_up_front(nothing_starts, capsys):
    code = cli.main(["local-run", "--agents", "0", "--set", "data_uri=photos"])

    assert code == 2
    assert capsys.readouterr().err.startswith(
        "edgetune: error: pipeline parameter signing_key is empty; deploy signs every bundle"
    )
    package = nothing_starts / "pipeline.yaml"
    package.write_text("{}")
    code = cli.main(
        ["submit", "--host", "http://127.0.0.1:9", "--package", str(package),
         "--set", "data_uri=s3://bucket/photos", "--set", "tracking_uri=http://mlflow:5000"]
    )  # fmt: skip
    assert code == 2
    assert "signing_key is empty" in capsys.readouterr().err


def test_an_int_for_a_float_reaches_the_pipeline_as_a_float(nothing_starts, monkeypatch):
    seen = {}

    def fake_pipeline(params, out, **options):
        seen.update(params, **options)
        raise KeyboardInterrupt  # stop here: what the DAG would receive is what we check

    monkeypatch.setattr(local_run, "run_pipeline", fake_pipeline)
    private, _ = generate_keypair(nothing_starts / "keys")
    code = cli.main(
        ["local-run", "--agents", "0", "--out", str(nothing_starts / "runs"),
         "--set", "data_uri=photos", "--set", f"signing_key={private}",
         "--set", "min_accuracy=1", "--set", "deploy_timeout_s=60"]
    )  # fmt: skip

    assert code == 130
    assert seen["min_accuracy"] == 1.0 and type(seen["min_accuracy"]) is float
    assert type(seen["deploy_timeout_s"]) is float
    assert seen["data_uri"] == str(nothing_starts / "photos")
    assert seen["cache"] is True  # local runs reuse unchanged steps unless --no-cache
    assert seen["zygote"] is not None  # tasks fork from it unless --cold-tasks
    assert seen["data_version"].startswith("listing:") and seen["code_version"]


def test_a_bad_value_stops_the_run_before_the_demo_data_is_written(nothing_starts, capsys):
    code = cli.main(["local-run", "--set", "head_epochs=0", "--set", "unfreeze_epochs=0"])

    assert code == 2
    assert "nothing would train" in capsys.readouterr().err
    assert not (nothing_starts / "data").exists()  # the default preset's data/digits


def test_fleet_federate_reads_its_own_options_and_names_a_missing_data_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as help_exit:
        cli.main(["fleet", "federate", "-h"])
    assert help_exit.value.code == 0 and "--noise-multiplier" in capsys.readouterr().out

    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("devices: []\n")
    args = ["fleet", "federate", "--bundle", str(tmp_path / "b.tar"), "--data", str(tmp_path / "none"),
            "--fleet", str(fleet), "--trusted-key", "k.pub", "--signing-key", "k"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgetune: error:") and "no test split" in err and "\n" not in err
