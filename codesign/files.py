"""Files codesign reads and writes: never half-written, never someone else's.

Inputs: :func:`read_json` turns every way a JSON file can be wrong (missing, unreadable, not
UTF-8, invalid, nested too deeply) into one :class:`CodesignError` line.

Outputs: :func:`check_outside_inputs` refuses an output location that is, or contains, an input
file. :func:`write_file` writes one file through a temporary sibling renamed into place.
:func:`output_folder` writes a folder (``generate``'s, ``report``'s ``report/``): it locks the
folder, stages the new files inside it and, once they are all written, replaces only what codesign
wrote there before. What codesign wrote is listed in the folder's manifest :data:`MANIFEST`; files
it does not list are never deleted (``--force`` replaces a codesign folder, never a folder of
anyone else). The lock :data:`LOCK` (``fcntl``) says which command holds the folder.
Temporaries are named after their process; those of processes no longer alive are removed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Optional

from . import __version__
from .errors import CodesignError

MANIFEST = ".codesign.json"          #: what codesign wrote into a folder
LOCK = ".codesign.lock"              #: held (fcntl) while a command writes the folder
STAGE_PREFIX = ".codesign-stage-"    #: + pid: the new files of a folder before they replace the old
TEMP_INFIX = ".tmp-"                 #: ``.<name>.tmp-<pid>``: a file before it is renamed into place
MANIFEST_SCHEMA = "codesign-written/1"


# --- inputs ----------------------------------------------------------------------------------

def read_json(path: str | Path, fix: str) -> Any:
    """The JSON value in ``path``; any problem is one line naming the file and ``fix``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CodesignError(f"{path} not found: {fix}") from None
    except IsADirectoryError:
        raise CodesignError(f"{path} is a folder, not a JSON file: {fix}") from None
    except UnicodeDecodeError:
        raise CodesignError(f"{path} is not UTF-8 text: {fix}") from None
    except OSError as exc:
        raise CodesignError(f"cannot read {path}: {exc.strerror}; {fix}") from None
    return parse_json(text, str(path), fix)


def parse_json(text: str, source: str, fix: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CodesignError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                            f"{fix}") from None
    except RecursionError:
        raise CodesignError(f"{source}: JSON nested too deeply to be a codesign file; {fix}") from None
    except ValueError as exc:                    # an integer of more than 4300 digits
        raise CodesignError(f"{source}: not a JSON file codesign can read ({exc}); {fix}") from None


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it, as given or with symbolic links resolved."""
    forms = lambda p: {os.path.abspath(p), os.path.realpath(p)}
    return any(p == f or p.startswith(f.rstrip(os.sep) + os.sep) for p in forms(path) for f in forms(folder))


def within(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` stays inside ``folder`` with every symbolic link resolved (a file named by a
    folder's own manifest must)."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def check_outside_inputs(out: str | Path, inputs: Iterable[Optional[str | Path]], flag: str) -> None:
    """Refuse an output ``out`` (given as ``flag``) that is or contains one of the ``inputs``."""
    for given in inputs:
        if given is not None and str(given) and inside(given, out):
            relation = "is" if inside(out, given) else "contains"
            raise CodesignError(f"{flag} {out} {relation} the input {given}: write the output elsewhere")


# --- one file --------------------------------------------------------------------------------

def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(name: str, prefix: str) -> bool:
    """Whether ``name`` is ``prefix<pid>`` of a process that is no longer alive."""
    match = re.fullmatch(re.escape(prefix) + r"(\d+)", name)
    return bool(match) and int(match[1]) != os.getpid() and not pid_alive(int(match[1]))


def write_file(path: str | Path, write: Callable[[BinaryIO], None], force: bool = False, flag: str = "--out",
               inputs: Iterable[Optional[str | Path]] = ()) -> None:
    """Write exactly ``path`` through ``write(file)`` into a temporary sibling renamed into place at the
    end, so ``path`` is never half-written. An existing ``path`` is replaced only with ``force``."""
    path = Path(path)
    check_outside_inputs(path, inputs, flag)
    if path.is_dir():
        raise CodesignError(f"{flag} {path} is a folder: give a file name")
    if os.path.lexists(path) and not force:
        raise CodesignError(f"{path} exists; pass --force to replace it")
    parent = path.parent
    if not parent.is_dir():
        raise CodesignError(f"folder {parent} does not exist: create it first")
    prefix = f".{path.name}{TEMP_INFIX}"
    for old in parent.glob(f"{glob_escape(prefix)}*"):
        if _stale(old.name, prefix):
            old.unlink(missing_ok=True)
    tmp = parent / f"{prefix}{os.getpid()}"
    try:
        with open(tmp, "wb") as file:
            write(file)
        os.replace(tmp, path)
    except OSError as exc:
        raise CodesignError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


# --- the lock --------------------------------------------------------------------------------

@contextmanager
def locked(root: Path, command: str) -> Iterator[None]:
    """Hold ``root/.codesign.lock`` (``fcntl.flock``) while the body runs; refuse, naming the holder,
    if another process holds it. The lock file is removed on release."""
    path = root / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise CodesignError(f"cannot write into {root}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise CodesignError(f"cannot lock {root}: {exc.strerror}") from None
            raise CodesignError(f"{root} is in use by {holder}: wait for it to finish, or use another "
                                f"folder") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)        # the holder removed the file as we opened it: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": f"codesign {command}",
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        yield
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)


def _holder(fd: int, patience: float = 1.0) -> str:
    """Who holds the lock, from the lock file; the holder writes it just after taking the lock, so
    an empty or partial file is read again for up to ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"'{info['command']}' (pid {int(info['pid'])}, since {info['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return "another codesign process"
            time.sleep(0.02)


# --- the manifest ----------------------------------------------------------------------------

@dataclass
class Manifest:
    """What codesign wrote into a folder: files, and folders it owns entirely (``sim/``), as
    POSIX paths relative to the folder."""

    files: set[str] = field(default_factory=set)
    trees: set[str] = field(default_factory=set)

    def owns(self, rel: str) -> bool:
        return rel in self.files or any(rel == t or rel.startswith(t + "/") for t in self.trees)

    def to_json(self) -> str:
        return json.dumps({"schema": MANIFEST_SCHEMA, "generator": f"codesign {__version__}",
                           "files": sorted(self.files), "trees": sorted(self.trees)}, indent=1) + "\n"


def _relative(entry: Any) -> bool:
    """Whether a manifest entry is a plain relative path that stays inside the folder."""
    if not isinstance(entry, str) or not entry or "\0" in entry or "\\" in entry:
        return False
    parts = PurePosixPath(entry).parts
    return not entry.startswith("/") and "/".join(parts) == entry and not {"..", "."} & set(parts)


def read_manifest(root: Path) -> Optional[Manifest]:
    """The manifest of ``root``, None if it has none; a corrupt one is refused."""
    path = root / MANIFEST
    if not os.path.lexists(path):
        return None
    fix = f"codesign will not replace anything in {root}; remove the folder yourself or write elsewhere"
    if path.is_symlink() or not path.is_file():
        raise CodesignError(f"{path} is not a codesign manifest: {fix}")
    data = read_json(path, fix)
    if (not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA
            or not all(isinstance(data.get(k), list) and all(map(_relative, data[k])) for k in ("files", "trees"))):
        raise CodesignError(f"{path} is corrupt (edited by hand?): {fix}")
    return Manifest(set(data["files"]), set(data["trees"]))


def write_manifest(root: Path, manifest: Manifest) -> None:
    tmp = root / f".{MANIFEST}{TEMP_INFIX}{os.getpid()}"
    tmp.write_text(manifest.to_json())
    os.replace(tmp, root / MANIFEST)


def claim_tree(root: Path, name: str) -> None:
    """Record ``root/name`` as a folder codesign owns entirely (before writing into it in place);
    refused if it exists and codesign did not write it."""
    manifest = read_manifest(root) or Manifest()
    if name in manifest.trees:
        return
    if os.path.lexists(root / name) and not manifest.owns(name):
        raise CodesignError(f"{root / name} was not written by codesign: move it away first")
    manifest.trees.add(name)
    try:
        write_manifest(root, manifest)
    except OSError as exc:
        raise CodesignError(f"cannot write into {root}: {exc.strerror}") from None


# --- folders ---------------------------------------------------------------------------------

def _real_path(root: Path, rel: str) -> bool:
    """Whether every component of ``root/rel`` below ``root`` is a real file or folder (no symbolic
    link), so acting on it cannot reach outside ``root``."""
    path = root
    for part in PurePosixPath(rel).parts:
        path = path / part
        if path.is_symlink():
            return False
    return True


def _entries(folder: Path, skip: set[str]) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name not in skip)


def _walk(folder: Path) -> set[str]:
    """Every file below ``folder``, relative, as POSIX paths."""
    found = set()
    for dirpath, _, files in os.walk(folder):
        base = Path(dirpath).relative_to(folder)
        found.update((base / name).as_posix() for name in files)
    return found


def _ancestors(rel: str) -> list[str]:
    parts = PurePosixPath(rel).parts
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _remove_stale_stages(root: Path) -> None:
    for name in os.listdir(root):
        if _stale(name, STAGE_PREFIX):
            shutil.rmtree(root / name, ignore_errors=True)
        elif _stale(name, f".{MANIFEST}{TEMP_INFIX}"):
            (root / name).unlink(missing_ok=True)


def _os_error(what: str, path: Path, exc: OSError) -> CodesignError:
    return CodesignError(f"cannot {what} {path}: {exc.strerror or exc}")


@contextmanager
def output_folder(root: str | Path, command: str, part: Optional[str] = None, force: bool = False,
                  inputs: Iterable[Optional[str | Path]] = (), flag: str = "--out",
                  log: Callable[[str], None] = lambda message: None) -> Iterator[Path]:
    """Yield an empty staging folder for ``root`` (or, with ``part``, for ``root/part``); when the body
    succeeds, its files replace what codesign wrote there before and the manifest lists them.

    ``root`` is created if missing (and removed again on failure). An existing non-empty ``root``
    is replaced only with ``force`` and only if codesign wrote it; files it did not write stay
    (``log`` names them). ``part`` is replaced whenever codesign wrote it. ``inputs`` may not be
    inside what is replaced. On any failure or interrupt nothing changes. The folder is locked
    (:func:`locked`) throughout.
    """
    root = Path(root)
    target = root / part if part else root
    check_outside_inputs(target, inputs, flag)
    if os.path.lexists(root) and not root.is_dir():
        raise CodesignError(f"{flag} {root} exists and is not a folder")
    created = [p for p in reversed([root, *root.absolute().parents]) if not os.path.lexists(p)]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error("create", root, exc) from None
    stage = root / f"{STAGE_PREFIX}{os.getpid()}"
    committed = False
    try:
        with locked(root, command):
            _remove_stale_stages(root)
            manifest = read_manifest(root)
            hidden = {LOCK, MANIFEST} | {n for n in os.listdir(root) if n.startswith(STAGE_PREFIX)}
            _check_replaceable(root, part, manifest, force, hidden, flag)
            try:
                (stage / (part or "")).mkdir(parents=True)
            except OSError as exc:
                raise _os_error("write into", root, exc) from None
            try:
                yield stage / (part or "")
                kept = _commit(root, stage, part, manifest or Manifest())
                committed = True
            finally:
                shutil.rmtree(stage, ignore_errors=True)
            if kept:
                log(f"kept {len(kept)} file(s) in {root} that codesign did not write: {', '.join(kept[:3])}"
                    + (" …" if len(kept) > 3 else ""))
    finally:
        if not committed:
            for path in reversed(created):
                try:
                    path.rmdir()
                except OSError:
                    break


def check_replaceable(root: str | Path, force: bool, flag: str = "--out") -> None:
    """Refuse early (before any work) an output folder :func:`output_folder` would refuse."""
    root = Path(root)
    if os.path.lexists(root) and not root.is_dir():
        raise CodesignError(f"{flag} {root} exists and is not a folder")
    if root.is_dir():
        hidden = {LOCK, MANIFEST} | {n for n in os.listdir(root) if n.startswith(STAGE_PREFIX)}
        _check_replaceable(root, None, read_manifest(root), force, hidden, flag)


def _check_replaceable(root: Path, part: Optional[str], manifest: Optional[Manifest], force: bool,
                       hidden: set[str], flag: str) -> None:
    if part:
        target = root / part
        if os.path.lexists(target) and not (manifest and _owned_tree(root, part, manifest)):
            raise CodesignError(f"{target} was not written by codesign: move it away first")
        return
    if not _entries(root, hidden):
        return
    if manifest is None:
        raise CodesignError(f"{flag} {root} is not empty and was not written by codesign (it has no {MANIFEST}): "
                            f"give a new or empty folder")
    if not force:
        raise CodesignError(f"{flag} {root} holds an earlier codesign output; pass --force to replace it")


def _owned_tree(root: Path, part: str, manifest: Manifest) -> bool:
    """Whether codesign wrote everything in ``root/part``."""
    if manifest.owns(part):
        return True
    path = root / part
    return path.is_dir() and not path.is_symlink() and all(
        manifest.owns(f"{part}/{rel}") for rel in _walk(path))


def _commit(root: Path, stage: Path, part: Optional[str], old: Manifest) -> list[str]:
    """Replace codesign's earlier files in ``root`` (all, or those under ``part``) with the staged ones;
    returns the files kept because codesign did not write them."""
    new = _walk(stage)
    in_scope = (lambda rel: True) if not part else (lambda rel: rel == part or rel.startswith(part + "/"))
    files = {f for f in old.files if in_scope(f) and _real_path(root, f)}
    trees = {t for t in old.trees if in_scope(t) and _real_path(root, t)}
    replaced = Manifest(files, trees)
    for rel in sorted(new):
        for prefix in [*_ancestors(rel), rel]:
            path = root / prefix
            if not os.path.lexists(path) or replaced.owns(prefix):
                continue
            if prefix != rel and path.is_dir() and not path.is_symlink():
                continue
            raise CodesignError(f"{path} was not written by codesign: move it away first")
    try:
        write_manifest(root, Manifest(old.files | new, old.trees))      # every file either way is listed
        for rel in sorted(trees):
            if (root / rel).is_dir():
                shutil.rmtree(root / rel)
        for rel in sorted(files):
            path = root / rel
            if path.is_file() and not path.is_symlink():
                path.unlink()
        for folder in sorted({a for rel in files for a in _ancestors(rel)}, key=len, reverse=True):
            try:
                (root / folder).rmdir()
            except OSError:
                pass            # not empty: it holds files codesign did not write
        _move_into(stage, root)
        write_manifest(root, Manifest((old.files - files) | new, old.trees - trees))
    except OSError as exc:
        raise _os_error("write into", root, exc) from None
    scope = root / part if part else root
    if not scope.is_dir():
        return []
    prefix = f"{part}/" if part else ""
    skip = {LOCK, MANIFEST} if not part else set()
    return sorted(f"{prefix}{rel}" for rel in _walk(scope)
                  if not (f"{prefix}{rel}" in new or rel.split("/")[0] in skip or rel.startswith(STAGE_PREFIX)))


def _move_into(source: Path, dest: Path) -> None:
    """Rename every entry of ``source`` into ``dest``, merging into folders that exist."""
    for name in os.listdir(source):
        src, dst = source / name, dest / name
        if src.is_dir() and dst.is_dir() and not dst.is_symlink():
            _move_into(src, dst)
        else:
            os.rename(src, dst)
