# Sourced by .ci/install-deps and .ci/run (and by hand: `. .ci/venv.sh`): when python3 is a
# distribution's externally-managed Python (PEP 668, Debian 12's /usr/bin/python3) and no venv is
# active, create ./.venv (Debian's python3-venv) and activate it, so that `python3 -m pip install`
# and `python3 -m pytest` use it. Any other Python (pyenv, a venv already active) is used as is.
ssb_externally_managed() {
  python3 - <<'PY'
import os, sys, sysconfig
sys.exit(0 if sys.prefix == sys.base_prefix
         and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)
PY
}
if [ -z "${VIRTUAL_ENV:-}" ] && ssb_externally_managed; then
  [ -x .venv/bin/python3 ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
