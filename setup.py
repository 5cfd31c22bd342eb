"""pip install of the offline half only: `pip install .` gives despite_core and the `despite` command.

The ROS package (interfaces, nodes, launch files) is built by CMakeLists.txt, through colcon or
`make`. The distribution is named `despite`, never `despite_ros`: with that name pip would take the
CMake-installed egg-info for its own and uninstall it, deleting the generated messages.
"""
from glob import glob

from setuptools import find_packages, setup

setup(
    name="despite",
    version="0.1.0",
    description="DeSPITE LiDAR/IMU/skeleton/text joint embeddings for privacy-preserving activity recognition",
    packages=find_packages(include=["despite_core", "despite_core.*"]),
    python_requires=">=3.10",
    install_requires=["numpy", "scipy", "PyYAML", "tqdm", "matplotlib", "open3d-cpu", "rosbags"],
    # The message definitions: despite_core.data.rosbag reads them to write/read bags without ROS.
    # The person classifier: despite_core.runtime.perception loads it (despite eval perception, bag tools).
    data_files=[("share/despite_ros/msg", sorted(glob("msg/*.msg"))),
                ("share/despite_ros/models/perception", sorted(glob("models/perception/*.npz")))],
    entry_points={"console_scripts": ["despite = despite_core.cli:main"]},
)
