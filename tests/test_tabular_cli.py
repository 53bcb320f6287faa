"""``pe-jax tabular`` end to end on a small slice, and its refusals of bad input."""

import json

import numpy as np
import pytest

from pe_jax import cli, tabular

SMALL_PE = ["--set", "private_rows=300", "--set", "pe.iterations=2", "--set", "pe.samples=60"]


def _slice(tmp_path) -> list[str]:
    """A 600-row slice of Adult's first four columns and income, as a CSV and domain file."""
    adult = tabular.load_adult()
    keep = ["age", "workclass", "education-num", "sex", "income>50K"]
    columns = [adult.attributes.index(a) for a in keep]
    csv, domain = tmp_path / "slice.csv", tmp_path / "slice.json"
    np.savetxt(csv, adult.codes[:600, columns], fmt="%d", delimiter=",",
               header=",".join(keep), comments="")
    domain.write_text(json.dumps({a: adult.domain[a] for a in keep}))
    return ["--set", f"data={csv}", "--set", f"domain={domain}"]


def test_tabular_pe_writes_csv_metrics_and_privacy_report_and_keeps_them(tmp_path, capsys):
    out = tmp_path / "pe"
    data = _slice(tmp_path)
    assert cli.main(["tabular", "--method", "pe", "--out", str(out), *data, *SMALL_PE]) == 0
    assert {p.name for p in out.iterdir()} == {
        "synthetic.csv", "metrics.json", "privacy.json", "privacy.txt", "config.json"}
    table = tabular.load_csv(out / "synthetic.csv", tmp_path / "slice.json")
    assert len(table) == 60
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["tvd2"] < metrics["tvd3"] <= 1 and 0 <= metrics["accuracy"] <= 1
    held_out = tabular.Table(np.zeros((600, 5), int), table.domain).split(0.2)[1]
    assert metrics["measured_on"] == f"the {len(held_out)} held-out rows"
    report = json.loads((out / "privacy.json").read_text())
    assert report["differentially_private"] and 0.99 < report["epsilon"] <= 1.0
    # The default measured prior: one release of the 5 1-way marginals, then 2 vote releases.
    assert report["iterations"] == 3 and report["votes_per_row"] == [1, 5]
    assert report["private_data"]["rows"] == 300
    text = (out / "privacy.txt").read_text()
    assert "1 release of the noisy 1-way marginals of all m = 5 attributes" in text
    assert "2 releases, one per iteration, each a histogram of votes" in text
    assert "wrote" in capsys.readouterr().out
    before = (out / "synthetic.csv").read_bytes()
    assert cli.main(["tabular", "--method", "pe", "--out", str(out), *data, *SMALL_PE]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "synthetic.csv").read_bytes() == before


def test_tabular_pe_with_a_uniform_prior_releases_only_votes(tmp_path):
    out = tmp_path / "uniform"
    assert cli.main(["tabular", "--method", "pe", "--out", str(out), *_slice(tmp_path),
                     *SMALL_PE, "--set", "pe.marginal_share=0"]) == 0
    report = json.loads((out / "privacy.json").read_text())
    assert report["iterations"] == 2 and report["votes_per_row"] == [1]
    assert 0.99 < report["epsilon"] <= 1.0
    assert "1-way marginals" not in (out / "privacy.txt").read_text()


@pytest.mark.parametrize("settings, message", [
    (["--set", "method=gan"], "method must be one of"),
    (["--set", "epsilon=0"], "epsilon must be"),
    (["--set", "aim.max_model_size=-1"], "aim.max_model_size must be"),
    (["--set", "target=salary"], "target must be an attribute"),
    (["--set", "pe.iterations=1.5"], "--set pe.iterations must be an integer"),
    (["--set", "pe.ordinal=age,height"], "pe.ordinal must name attributes"),
    (["--set", "pe.marginal_share=1.0"], "pe.marginal_share must be"),
])
def test_tabular_refuses_bad_settings_before_writing(tmp_path, capsys, settings, message):
    out = tmp_path / "bad"
    assert cli.main(["tabular", "--out", str(out), *SMALL_PE, *settings]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_tabular_refuses_a_csv_outside_its_domain_before_any_release(tmp_path, capsys):
    domain = tmp_path / "domain.json"
    domain.write_text(json.dumps({"x": 2, "y": 3}))
    csv = tmp_path / "data.csv"
    rows = np.array([[0, 1], [1, 2]] * 10 + [[1, 3]])
    csv.write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in rows) + "\n")
    out = tmp_path / "out"
    args = ["tabular", "--method", "mst", "--out", str(out), "--set", f"data={csv}",
            "--set", f"domain={domain}", "--set", "target="]
    assert cli.main(args) == 2
    assert "codes must lie in [0, size)" in capsys.readouterr().err
    assert not out.exists()
    csv.write_text("x,z\n0,1\n")
    assert cli.main(args) == 2
    assert "missing ['y']" in capsys.readouterr().err and not out.exists()


def test_mst_privacy_text_describes_its_marginals_and_choices(tmp_path):
    """MST's report speaks of its own releases, counted from the ledger, not of PE's votes."""
    out = tmp_path / "mst"
    assert cli.main(["tabular", "--method", "mst", "--out", str(out), *_slice(tmp_path),
                     "--set", "private_rows=300", "--set", "mst.iters=20", "--quiet"]) == 0
    text = " ".join((out / "privacy.txt").read_text().split())
    # 5 attributes: the 1-way marginals, 4 tree edges chosen, their 2-way marginals
    assert "2 releases of noisy marginal counts, each of m = 4, 5 marginals" in text
    assert "4 choices by the exponential mechanism, each picking the next edge" in text
    assert "Epsilon spent after each ledger event" in text
    assert "histogram of votes" not in text and "Accountant: zCDP" in text
    report = json.loads((out / "privacy.json").read_text())
    assert report["iterations"] == 6 and len(report["epsilon_cumulative"]) == 6
