# The end-to-end test under a booted systemd (needs root, debootstrap and
# systemd-nspawn): boots a cached Debian 12 tree with this build installed
# and drives the units the way an operator would. See tests/e2e/run.
E2E_ARGS ?=
e2e: all
	$(abs_top_srcdir)/tests/e2e/run --srcdir $(abs_top_srcdir) --builddir $(abs_top_builddir) $(E2E_ARGS)
.PHONY: e2e
