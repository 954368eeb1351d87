"""How many steps a field conversion takes when the user names none: as many as fit in about
four minutes on a 2-core CPU, so that a cheap pair is not stopped short for an expensive one's
sake (tensorf-vm -> mlp: -1.86 dB at 900 steps, -0.81 at 2400; voxels -> tensorf-vm: -1.70 at
900, -0.77 at 1800)."""
from __future__ import annotations

from fieldkit.distill.student import sample_stride
from fieldkit.train import DEFAULT_SAMPLES_PER_DIAGONAL

# Seconds per distillation step on the 2-core reference CPU, split into the teacher's share and
# the student's at every teacher sample: a least-squares fit (within 16%) to 60-step timings of
# all 20 pairs at default settings, two threads, nothing else running. Whole runs mostly took
# 5-25% less per step; hashgrid -> tensorf-cp took 15% more (284 s for its 1400 steps). A student
# on every other sample (an MLP: see sample_stride) costs half its share; the MLP students'
# timings at that stride fit its share within 5% from the hash grid and 20% from the TensoRFs,
# and from the voxel teacher they cost 24% less than the estimate. The CP student is now rank 384
# on every other sample, which cost 38% less a step than rank 192 on every sample (voxels ->
# tensorf-cp, 1500 steps, one thread); its share stays rank 192's until the table is refitted.
TEACHER_STEP_SECONDS = {"hashgrid": 0.107, "voxels": 0.101, "tensorf-vm": 0.050, "tensorf-cp": 0.048,
                        "mlp": 0.008}
STUDENT_STEP_SECONDS = {"voxels": 0.101, "hashgrid": 0.084, "tensorf-cp": 0.114, "mlp": 0.041,
                        "tensorf-vm": 0.032}
BUDGET_SECONDS = 240.0
# past the most steps, the cheapest pairs gain little and should stay quick
FEWEST_STEPS, MOST_STEPS = 900, 3000
# a splat teacher (outside the table: it renders its views first) and a hash-grid student, 4096
# rays a step, pixels alone: -0.96 dB against the splats' test PSNR at 1200 steps, -0.93 at 1800
SPLAT_TEACHER_STEPS = 1800


def step_seconds(teacher: str, student: str) -> float:
    """Estimated seconds per step of `teacher` (at `fieldkit train`'s spacing) -> `student`."""
    stride = sample_stride(DEFAULT_SAMPLES_PER_DIAGONAL[teacher], student)
    return TEACHER_STEP_SECONDS[teacher] + STUDENT_STEP_SECONDS[student] / stride


def default_steps(teacher: str, student: str) -> int:
    """Steps (a multiple of 100) for `teacher` -> `student` architectures at default settings."""
    if teacher not in TEACHER_STEP_SECONDS:
        return SPLAT_TEACHER_STEPS
    steps = int(BUDGET_SECONDS / step_seconds(teacher, student)) // 100 * 100
    return min(max(steps, FEWEST_STEPS), MOST_STEPS)
