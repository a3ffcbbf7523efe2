# Source me (after scripts/bootstrap.sh): puts the venv, ROS 2 and the built workspace on
# the paths of the current shell.  `source scripts/env.sh`
_lab_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "$(cat "$_lab_root/.venv/.lab-stamps/ros_mode" 2>/dev/null)" = system ] && [ -z "${ROS_DISTRO:-}" ]; then
  # shellcheck disable=SC1091
  source /opt/ros/jazzy/setup.bash
fi
# shellcheck disable=SC1091
source "$_lab_root/.venv/bin/activate"
# shellcheck disable=SC1091
source "$_lab_root/ros2_ws/install/setup.bash"
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export PYTHONUNBUFFERED=1
unset _lab_root
