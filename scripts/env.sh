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
if [ "$(cat "$_lab_root/.venv/.lab-stamps/ros_mode" 2>/dev/null)" != system ]; then
  # the wheels install their ament index and share/ into the venv's prefix
  case ":${AMENT_PREFIX_PATH:-}:" in *":$_lab_root/.venv:"*) ;;
    *) export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$_lab_root/.venv" ;; esac
fi
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export PYTHONUNBUFFERED=1
unset _lab_root
