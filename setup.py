"""The ROS 2 package `lab` (ament_python) whose Python package lives in src/lab."""

import os

from setuptools import find_packages, setup

PACKAGE = "lab"


def tree(folder: str) -> list[tuple[str, list[str]]]:
    """Every file under `folder`, as data_files entries installed into share/lab/<folder>."""
    entries = []
    for root, _dirs, files in os.walk(folder):
        paths = [os.path.join(root, f) for f in files]
        if paths:
            entries.append((os.path.join("share", PACKAGE, root), paths))
    return entries


NODES = {
    # executable name -> module:function; the node table (config/nodes.yaml) names these
    "sim": "lab.nodes.sim:main",
    "navigator": "lab.nodes.navigator:main",
    "arm": "lab.nodes.arm:main",
    "station": "lab.nodes.station:main",
    "lab_manager": "lab.nodes.lab_manager:main",
    "planner": "lab.nodes.planner:main",
    "recorder": "lab.nodes.recorder:main",
    "traffic": "lab.nodes.traffic:main",
    "safety": "lab.nodes.safety:main",
    "foxglove_bridge": "lab.nodes.foxglove_bridge:main",
    "console": "lab.console.server:main",  # not a node module: lab.bringup.processes.MODULES
    "instrument": "lab.instruments.server:main",  # a SiLA 2 server, not a ROS node (the same MODULES)
}

setup(
    name=PACKAGE,
    version="0.1.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={"lab.console": ["static/*"],  # the console's page, script and style
                  "lab.instruments": ["features/*.sila.xml"]},  # the instruments' SiLA 2 features (FDL)
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *tree("launch"),
        *tree("config"),
        *tree("urdf"),
        *tree("worlds"),
        *tree("rviz"),
        *tree("maps"),
        *tree("data"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="Lab maintainers",
    maintainer_email="maintainers@example.com",
    description="A mobile robotic chemist on ROS 2.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [f"{name} = {target}" for name, target in NODES.items()]
        + ["lab = lab.app.cli:main"],
    },
)
