"""benchmarks/squad_matrix.py --dry_run: its run_squad.py command lines, checked by run_squad.py's own parser."""

import pytest

from benchmarks import squad_matrix


@pytest.mark.slow  # splits the offline SQuAD sample's articles
def test_dry_run_checks_and_prints_the_matrix(tmp_path, capsys):
    squad_matrix.main(["--output_dir", str(tmp_path / "out"), "--results_dir", str(tmp_path / "results"),
                       "--dry_run", "--best_lr", "1e-4", "--stages", "matrix"])
    commands = [line for line in capsys.readouterr().out.splitlines() if "scripts/run_squad.py" in line]
    schedules = {line.split("--lr_schedule ")[1].split()[0] for line in commands}
    assert schedules == {"linear", "knee", "lrtuner"}
    assert not (tmp_path / "results").exists()  # nothing run, nothing written
    with pytest.raises(ValueError):  # an invalid tuner setting fails in the check, before any run
        squad_matrix.main(["--output_dir", str(tmp_path / "out"), "--results_dir", str(tmp_path / "results"),
                           "--dry_run", "--best_lr", "1e-4", "--stages", "matrix", "--lrtuner_options",
                           "--lrtuner_race_factor 0.5"])
