"""How many steps a field conversion takes when the user names none: as many as fit in about
four minutes on a 2-core CPU, so that a cheap pair is not stopped short for an expensive one's
sake (tensorf-vm -> mlp: -1.86 dB at 900 steps, -0.81 at 2400; voxels -> tensorf-vm: -1.70 at
900, -0.77 at 1800)."""
from __future__ import annotations

from fieldkit.train import DEFAULT_SAMPLES_PER_DIAGONAL

# Seconds per distillation step on the 2-core reference CPU: the teacher's share and the
# student's per-sample share at 256 samples per diagonal, scaled down for a pair that marches at
# fewer (an MLP on either side: see student_step_size), plus a voxel student's fixed share (its
# optimiser step and total variation cover the whole grid, whatever the batch). A least-squares
# fit (within 13%) to 60-step timings of all 20 pairs at default settings, two threads, nothing
# else running. Whole runs mostly took 5-25% less per step; hashgrid -> tensorf-cp took 15% more.
TEACHER_STEP_SECONDS = {"hashgrid": 0.095, "voxels": 0.088, "mlp": 0.050, "tensorf-vm": 0.034,
                        "tensorf-cp": 0.033}
STUDENT_STEP_SECONDS = {"hashgrid": 0.102, "tensorf-cp": 0.072, "mlp": 0.057, "tensorf-vm": 0.043,
                        "voxels": 0.026}
STUDENT_FIXED_SECONDS = {"voxels": 0.084}
REFERENCE_SAMPLES = 256
BUDGET_SECONDS = 240.0
# a teacher outside the table (splats, which first render their views) gets the fewest steps;
# past the most, the cheapest pairs gain little and should stay quick
FEWEST_STEPS, MOST_STEPS = 900, 3000


def step_seconds(teacher: str, student: str) -> float:
    """Estimated seconds per step of `teacher` -> `student`, both at `fieldkit train`'s spacing."""
    samples = min(DEFAULT_SAMPLES_PER_DIAGONAL[teacher], DEFAULT_SAMPLES_PER_DIAGONAL[student])
    per_sample = (TEACHER_STEP_SECONDS[teacher] + STUDENT_STEP_SECONDS[student]) * samples / REFERENCE_SAMPLES
    return per_sample + STUDENT_FIXED_SECONDS.get(student, 0.0)


def default_steps(teacher: str, student: str) -> int:
    """Steps (a multiple of 100) for `teacher` -> `student` architectures at default settings."""
    if teacher not in TEACHER_STEP_SECONDS:
        return FEWEST_STEPS
    steps = int(BUDGET_SECONDS / step_seconds(teacher, student)) // 100 * 100
    return min(max(steps, FEWEST_STEPS), MOST_STEPS)
