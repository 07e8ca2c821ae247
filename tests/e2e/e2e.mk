# The end-to-end tests under a booted systemd (need root, debootstrap and
# systemd-nspawn): tests/e2e/run boots a cached Debian 12 tree with this
# build installed and drives the units the way an operator would;
# tests/e2e/package builds the Debian package, checks it with lintian, and
# installs, upgrades under load and purges it in the same kind of machine;
# tests/e2e/container builds the example site's image and runs it as a
# container platform would (podman, else systemd-nspawn). All run, whatever
# the others' results.
E2E_ARGS ?=
e2e: all
	@status=0; \
	$(abs_top_srcdir)/tests/e2e/run --srcdir $(abs_top_srcdir) --builddir $(abs_top_builddir) $(E2E_ARGS) || status=1; \
	$(abs_top_srcdir)/tests/e2e/package --srcdir $(abs_top_srcdir) --builddir $(abs_top_builddir) $(E2E_ARGS) || status=1; \
	$(abs_top_srcdir)/tests/e2e/container --srcdir $(abs_top_srcdir) --builddir $(abs_top_builddir) $(E2E_ARGS) || status=1; \
	exit $$status
e2e-run: all
	$(abs_top_srcdir)/tests/e2e/run --srcdir $(abs_top_srcdir) --builddir $(abs_top_builddir) $(E2E_ARGS)
e2e-package: all
	$(abs_top_srcdir)/tests/e2e/package --srcdir $(abs_top_srcdir) --builddir $(abs_top_builddir) $(E2E_ARGS)
e2e-container: all
	$(abs_top_srcdir)/tests/e2e/container --srcdir $(abs_top_srcdir) --builddir $(abs_top_builddir) $(E2E_ARGS)
.PHONY: e2e e2e-run e2e-package e2e-container
