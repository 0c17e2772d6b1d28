import re

import plain_pytorch


def test_plain_pytorch_example_runs_and_learns(capsys):
    final_loss = plain_pytorch.main(steps=150)
    out = capsys.readouterr().out
    races = re.findall(r"^race +(\d+)- *(\d+) .* -> multiplier ([\d.]+)$", out, flags=re.MULTILINE)
    assert races and races[0][:2] == ("0", "15")  # the first race starts with the run
    assert float(races[-1][2]) > 1  # from 10x too low, the races raise the multiplier
    trial_updates = int(re.search(r"150 updates \+ (\d+) trial updates", out).group(1))
    assert 0 < trial_updates <= 5 * 15  # (max_races + 1) * race_horizon at most
    # from ~1.39 (4 classes); linear warmup-decay at 1e-3 reaches 0.72 with the same compute (225 updates)
    assert final_loss < 0.4
