"""training.lr_at steps exactly like the paper's schedule: EasyLM's optax join_schedules of two linear_schedules
(step 0 at lr 0, the peak at the end of warmup, linear decay towards `end` reached one past the last step)."""
import math

import pytest

from nanopref.training import lr_at


def optax_linear(init, end, transition_steps):
    """optax.linear_schedule written out naively: held at init for transition_steps <= 0, else the count clipped to
    [0, transition_steps] and interpolated."""
    if transition_steps <= 0:
        return lambda count: init
    return lambda count: (init - end) * (1 - min(max(count, 0), transition_steps) / transition_steps) + end


def optax_join(schedules, boundaries):
    """optax.join_schedules: the last schedule whose boundary the step has reached, given step - boundary."""
    def schedule(step):
        out = schedules[0](step)
        for b, s in zip(boundaries, schedules[1:]):
            out = out if step < b else s(step - b)
        return out
    return schedule


def easylm(total, warmup_frac, peak, end):
    """EasyLM's AdamWOptimizerFactory schedule with lr_warmup_steps = ceil(warmup_ratio * total) and
    lr_decay_steps = total (llama_train_dpo.py / llama_train_rm.py)."""
    w = math.ceil(warmup_frac * total)
    return optax_join([optax_linear(0.0, peak, w), optax_linear(peak, end, total - w)], [w])


def test_hand_computed_total_10_warmup_3():
    # warmup W = ceil(0.3 * 10) = 3: 0, 1/3, 2/3 of the peak, then the peak at step 3 and 7 decay steps to 0
    expected = [0, 1 / 3, 2 / 3, 1, 6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7, 1 / 7]
    got = [lr_at(s, 10, 1.0, 0.3) for s in range(10)]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert got[0] == 0.0 and got[3] == 1.0
    # RM: 1e-5 -> 1e-6 (end 0.1 of the peak), warmup W = ceil(0.25 * 4) = 1: 0, then 1, 0.7, 0.4 (x 1e-5)
    assert [lr_at(s, 4, 1e-5, 0.25, end=1e-6) for s in range(4)] == pytest.approx([0, 1e-5, 7e-6, 4e-6], rel=1e-12)
    # PPO: warmup then constant (EasyLM sets end_lr = lr)
    assert [lr_at(s, 6, 2.0, 0.5, decay="constant") for s in range(6)] == pytest.approx([0, 2 / 3, 4 / 3, 2, 2, 2])


@pytest.mark.parametrize("total", [1, 2, 3, 7, 10, 33, 250])
@pytest.mark.parametrize("warmup_frac", [0.0, 0.03, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("end", [0.0, 0.1])
def test_matches_naive_optax(total, warmup_frac, end):
    ref = easylm(total, warmup_frac, 1.0, end)
    for s in range(total + 2):  # past the end too: optax holds `end`
        assert lr_at(s, total, 1.0, warmup_frac, end=end) == pytest.approx(ref(s), rel=1e-12, abs=1e-15), s


def test_cosine_is_optax_warmup_cosine_decay():
    total, w, end = 20, 4, 0.1
    for s in range(total + 1):
        ref = s / w if s < w else end + (1 - end) * 0.5 * (1 + math.cos(math.pi * min(s - w, total - w) / (total - w)))
        assert lr_at(s, total, 1.0, w / total, end=end, decay="cosine") == pytest.approx(ref, rel=1e-12)
