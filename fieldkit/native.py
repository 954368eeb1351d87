"""The native kernels: built on first use, cached, and optional.

The per-element bodies in `cuda/*.h` are launched by `cuda/cpu_ops.cpp` (OpenMP) and
`cuda/cuda_ops.cu` (CUDA), which register `torch.ops.fieldkit.*`. Nothing is compiled at import
or install time: the first op that asks `available(device)` builds the launcher of that device
with `torch.utils.cpp_extension`, into a cache directory named by a hash of the sources, the torch
version and the compiler flags, so a cache made for other sources or another torch is never
loaded. When the build is impossible or fails, or `FIELDKIT_NATIVE=0`, every op runs its torch
reference instead, and the reason is logged once, in one line.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger("fieldkit.native")

# the checkout's cuda/, or the copy a wheel installs as fieldkit/cuda
SOURCES = next((folder for folder in (Path(__file__).resolve().parent.parent / "cuda",
                                      Path(__file__).resolve().parent / "cuda") if (folder / "cpu_ops.cpp").is_file()),
               Path(__file__).resolve().parent / "cuda")
HEADERS = ("common.h", "hash_encoding.h", "volume.h", "op_checks.h", "splats.h", "splat_op_checks.h", "marching.h",
           "marching_checks.h", "marching_kernels.cuh")
LAUNCHERS = {"cpu": "cpu_ops.cpp", "cuda": "cuda_ops.cu"}
# further launcher files, built into the same library; each adds its ops with TORCH_LIBRARY_FRAGMENT
MORE_LAUNCHERS = {"cpu": ("splat_ops_cpu.cpp",), "cuda": ("splat_ops.cu",)}
# macOS's clang has no -fopenmp: there the launchers build without it and run serially
_OPENMP = [] if sys.platform == "darwin" else ["-fopenmp"]
# no fused multiply-add: the marching ops round as torch's separate tensor ops do (cuda/marching.h)
CFLAGS = ["-O3", "-ffp-contract=off", *_OPENMP]
LDFLAGS = list(_OPENMP)
CUDA_FLAGS = ["-O3"]
SUPPORTED_DTYPES = (torch.float32, torch.float64)

_lock = threading.Lock()
_loaded: dict[str, bool] = {}  # device type -> whether its launcher is loaded; decided once per process
# device type -> the library loaded into this process: a second one would register the ops twice,
# which aborts the process, so once loaded it serves until exit whatever the cache or sources do
_libraries: dict[str, Path] = {}
_said: set[str] = set()  # the one-line messages already logged


def say_once(message: str, level: int = logging.WARNING) -> None:
    """Logs `message` the first time it is asked for in this process."""
    if message not in _said:
        _said.add(message)
        log.log(level, message)


def reset() -> None:
    """Forgets the decisions and messages (for tests); a library already loaded stays loaded."""
    with _lock:
        for device_type in [name for name, ok in _loaded.items() if not ok]:
            del _loaded[device_type]
        _said.clear()


def enabled() -> bool:
    return os.environ.get("FIELDKIT_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_root() -> Path:
    base = os.environ.get("FIELDKIT_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "fieldkit") / "native"


def sources(device_type: str, root: Path | None = None) -> list[Path]:
    root = SOURCES if root is None else root
    return [root / name for name in (LAUNCHERS[device_type], *MORE_LAUNCHERS[device_type], *HEADERS)]


def cache_key(device_type: str, root: Path | None = None) -> str:
    """A hash of what the build depends on: the sources, the torch (and CUDA) version, the flags
    and the compiler, so that a change to any of them builds afresh instead of loading a stale library."""
    digest = hashlib.sha256()
    for path in sources(device_type, root):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    compiler = os.environ.get("CXX", "c++")
    for part in (torch.__version__, str(torch.version.cuda), platform.machine(), compiler, *CFLAGS, *LDFLAGS,
                 *(CUDA_FLAGS if device_type == "cuda" else [])):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def _missing_tool(device_type: str) -> str | None:
    """Why the launcher of `device_type` cannot be built here, or None."""
    if not SOURCES.joinpath(LAUNCHERS[device_type]).is_file():
        return f"kernel sources not found in {SOURCES}"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) on PATH"
    if shutil.which("ninja") is None:
        from torch.utils.cpp_extension import is_ninja_available

        if not is_ninja_available():
            return "ninja is not installed (pip install ninja)"
    if device_type == "cuda":
        from torch.utils.cpp_extension import CUDA_HOME

        if torch.version.cuda is None or not torch.cuda.is_available():
            return "this torch has no CUDA device"
        if CUDA_HOME is None or not Path(CUDA_HOME, "bin", "nvcc").exists():
            return "nvcc was not found (set CUDA_HOME)"
    return None


@contextlib.contextmanager
def _exclusive(path: Path):
    """An advisory file lock, released by the OS if its holder dies, so a crashed build never
    blocks the next one. Where there is no fcntl, the rename in `_build` alone keeps builds safe."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _library_in(directory: Path) -> Path | None:
    found = [path for pattern in ("*.so", "*.pyd", "*.dylib") for path in directory.glob(pattern)]
    return found[0] if found else None


def _build(device_type: str) -> None:
    """Loads the launcher of `device_type`, building it first when its cache directory is missing.

    Processes that start at once take turns on a lock; each builds into a private temporary
    directory and renames it into place, so no process ever loads a half-written library.
    """
    from torch.utils.cpp_extension import load

    key = cache_key(device_type)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{device_type}-{key}"
    with _exclusive(root / f"{device_type}-{key}.lock"):
        library = _library_in(final) if final.is_dir() else None
        if library is not None:
            torch.ops.load_library(str(library))
            _libraries[device_type] = library
            return
        scratch = Path(tempfile.mkdtemp(prefix=f".{device_type}-{key}-", dir=root))
        try:
            log.info("building fieldkit's native %s kernels (once per source version) in %s", device_type, final)
            launchers = sources(device_type)[:1 + len(MORE_LAUNCHERS[device_type])]
            load(name=f"fieldkit_{device_type}_{key}", sources=[str(path) for path in launchers],
                 extra_cflags=CFLAGS, extra_cuda_cflags=CUDA_FLAGS, extra_ldflags=LDFLAGS,
                 extra_include_paths=[str(SOURCES)], build_directory=str(scratch), is_python_module=False,
                 verbose=False)
            _libraries[device_type] = final / _library_in(scratch).name
            scratch.chmod(0o755)  # mkdtemp's private mode would hide the cache from other users
            try:
                scratch.rename(final)
            except OSError:  # another process (without fcntl) got there first: its library is as good
                pass
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _failure_line(error: BaseException) -> str:
    """The first informative line of a build error (the full compiler log is long)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line] or [line for line in lines if "rror" in line]
    return (errors or lines or [type(error).__name__])[0][:300]


def _decide(device_type: str) -> bool:
    """Builds or loads the launcher of `device_type` once per process (called under _lock)."""
    if device_type in _loaded:
        return _loaded[device_type]
    if device_type in _libraries:
        _loaded[device_type] = True
        return True
    if device_type == "cuda" and not _decide("cpu"):
        reason = "the CPU library, which defines the ops, did not load"
    else:
        reason = _missing_tool(device_type)
    if reason is None:
        try:
            _build(device_type)
        except Exception as error:  # a failed build must never stop a render: fall back
            reason = f"build failed: {_failure_line(error)}"
    if reason is not None:
        say_once(f"fieldkit native {device_type} kernels unavailable ({reason}): using the torch reference")
    _loaded[device_type] = reason is None
    return _loaded[device_type]


def available(device: torch.device | str = "cpu") -> bool:
    """Whether `torch.ops.fieldkit` runs on `device`'s type; builds its launcher on the first call.
    The FIELDKIT_NATIVE switch is read on every call, so a test or a user can flip it at run time."""
    if not enabled():
        say_once("fieldkit native kernels are off (FIELDKIT_NATIVE=0): using the torch reference", logging.INFO)
        return False
    device_type = torch.device(device).type
    if device_type not in LAUNCHERS:
        return False
    if device_type not in _loaded:
        with _lock:
            _decide(device_type)
    return _loaded[device_type]


def prepare(op: str, *tensors: Tensor) -> list[Tensor]:
    """The tensors as the native op takes them: contiguous and of one supported floating dtype.
    A conversion is logged once per op and reason, never raised."""
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    if dtype not in SUPPORTED_DTYPES:
        say_once(f"fieldkit native {op}: {dtype} is computed in torch.float32 (the kernels take float32 and "
                 "float64)", logging.INFO)
        dtype = torch.float32
    elif any(tensor.dtype != dtype for tensor in tensors):
        names = ", ".join(sorted({str(tensor.dtype) for tensor in tensors}))
        say_once(f"fieldkit native {op}: mixed dtypes ({names}) are computed in {dtype}", logging.INFO)
    if any(not tensor.is_contiguous() for tensor in tensors):
        say_once(f"fieldkit native {op}: a non-contiguous input is copied to contiguous memory", logging.DEBUG)
    return [tensor.to(dtype).contiguous() for tensor in tensors]


def wanted(*tensors: Tensor) -> bool:
    """Whether an op on these tensors takes the native path: the switch is on, every tensor is on
    one device, and that device's launcher is loaded."""
    devices = {tensor.device for tensor in tensors}
    return len(devices) == 1 and available(next(iter(devices)))
