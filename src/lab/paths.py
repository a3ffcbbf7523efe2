"""Where the package's files are: the source tree when run from a checkout, else share/lab."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def share_dir() -> Path:
    """The directory holding config/, launch/, urdf/, worlds/, rviz/ and data/.

    A checkout (or a colcon symlink install, whose modules resolve into the checkout) uses the
    checkout itself, so a file added there needs no rebuild; an installed package uses its
    ament share directory.
    """
    root = Path(__file__).resolve().parents[2]
    if (root / "package.xml").is_file() and (root / "config").is_dir():
        return root
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("lab"))


def config_path(*parts: str) -> Path:
    return share_dir().joinpath("config", *parts)


def data_path(name: str) -> Path:
    return share_dir() / "data" / name


def executable(name: str) -> Path:
    """A node executable as colcon installed it (lib/lab/<name>), found from the package."""
    from ament_index_python.packages import get_package_prefix

    return Path(get_package_prefix("lab")) / "lib" / "lab" / name
