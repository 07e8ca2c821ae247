# Fuzzing. `make fuzz` builds every libFuzzer target below with clang
# (ASan + UBSan) from the project's own sources and runs each one for
# $(FUZZ_SECONDS) seconds on its seed corpus (tests/fuzz/corpus/TARGET);
# a crash stops make with the reproducer in fuzz/artifacts/. What the
# fuzzer learns stays in fuzz/corpus-TARGET of the build tree.
# `make check` replays every seed and every committed crash reproducer
# (tests/fuzz/regress/TARGET) through the same targets built with the
# project's compiler (tests/test_hostile_fuzz.py).
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_TARGETS = http_parse chunked differential static_path config stdio_entry site_host worker_ident accept_enc proxy_proto forwarded

FUZZ_FLAGS = -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer -include $(top_builddir)/build-config.h -I$(top_srcdir)/common \
	-I$(top_srcdir)/proxy $(LLHTTP_CFLAGS) $(INIH_CFLAGS) -DLLHTTP_STRICT_MODE=1 \
	-DSYSCONFDIR='"$(sysconfdir)"' -DBINDIR='"$(bindir)"'
FUZZ_HTTP = $(top_srcdir)/common/http_parse.c $(top_srcdir)/common/http_head.c \
	$(top_srcdir)/common/http_guard.c $(top_srcdir)/common/http_reason.c \
	$(top_srcdir)/common/http_fields.c $(top_srcdir)/common/http_uri.c \
	$(top_srcdir)/common/http_target.c $(top_srcdir)/common/http_chunk.c
FUZZ_HTTP_H = $(top_srcdir)/common/http_parse.h $(top_srcdir)/common/http_head.h \
	$(top_srcdir)/common/http_guard.h $(top_srcdir)/common/http_fields.h \
	$(top_srcdir)/common/http_uri.h $(top_srcdir)/common/http_reply.h \
	$(top_srcdir)/common/http_target.h $(top_srcdir)/common/http_chunk.h
if LLHTTP_BUNDLED
FUZZ_LLHTTP = $(LLHTTP_SRCDIR)/llhttp.c $(LLHTTP_SRCDIR)/api.c $(LLHTTP_SRCDIR)/http.c
FUZZ_LLHTTP_LIBS =
else
FUZZ_LLHTTP =
FUZZ_LLHTTP_LIBS = $(LLHTTP_LIBS)
endif
FUZZ_CONFIG = $(top_srcdir)/common/config.c $(top_srcdir)/common/parse.c \
	$(top_srcdir)/common/listen.c $(top_srcdir)/common/log.c $(top_srcdir)/common/netmask.c \
	$(top_srcdir)/common/xalloc.c

fuzz/fuzz_http_parse: $(top_srcdir)/tests/fuzz/fuzz_http_parse.c $(FUZZ_HTTP) $(FUZZ_HTTP_H)
	$(AM_V_GEN)$(MKDIR_P) fuzz && $(FUZZ_CC) $(FUZZ_FLAGS) -o $@ \
	  $(top_srcdir)/tests/fuzz/fuzz_http_parse.c $(FUZZ_HTTP) $(FUZZ_LLHTTP) $(FUZZ_LLHTTP_LIBS)
fuzz/fuzz_chunked: $(top_srcdir)/tests/fuzz/fuzz_chunked.c $(FUZZ_HTTP) $(FUZZ_HTTP_H)
	$(AM_V_GEN)$(MKDIR_P) fuzz && $(FUZZ_CC) $(FUZZ_FLAGS) -o $@ \
	  $(top_srcdir)/tests/fuzz/fuzz_chunked.c $(FUZZ_HTTP) $(FUZZ_LLHTTP) $(FUZZ_LLHTTP_LIBS)
FUZZ_DIFF = $(top_srcdir)/proxy/fwd_head.c $(top_srcdir)/proxy/buf.c
FUZZ_DIFF_H = $(top_srcdir)/proxy/fwd_head.h $(top_srcdir)/proxy/headw.h $(top_srcdir)/proxy/buf.h
fuzz/fuzz_differential: $(top_srcdir)/tests/fuzz/fuzz_differential.c $(FUZZ_HTTP) $(FUZZ_HTTP_H) $(FUZZ_DIFF) \
	  $(FUZZ_DIFF_H)
	$(AM_V_GEN)$(MKDIR_P) fuzz && $(FUZZ_CC) $(FUZZ_FLAGS) -o $@ \
	  $(top_srcdir)/tests/fuzz/fuzz_differential.c $(FUZZ_HTTP) $(FUZZ_DIFF) $(FUZZ_LLHTTP) $(FUZZ_LLHTTP_LIBS)
fuzz/fuzz_static_path: $(top_srcdir)/tests/fuzz/fuzz_static_path.c $(top_srcdir)/proxy/static_path.c \
	  $(top_srcdir)/proxy/static_path.h $(top_srcdir)/common/http_uri.c $(top_srcdir)/common/http_uri.h
	$(AM_V_GEN)$(MKDIR_P) fuzz && $(FUZZ_CC) $(FUZZ_FLAGS) -o $@ \
	  $(top_srcdir)/tests/fuzz/fuzz_static_path.c $(top_srcdir)/proxy/static_path.c $(top_srcdir)/common/http_uri.c
fuzz/fuzz_config: $(top_srcdir)/tests/fuzz/fuzz_config.c $(FUZZ_CONFIG) $(top_srcdir)/common/config.h
	$(AM_V_GEN)$(MKDIR_P) fuzz && $(FUZZ_CC) $(FUZZ_FLAGS) -o $@ \
	  $(top_srcdir)/tests/fuzz/fuzz_config.c $(FUZZ_CONFIG) $(INIH_LIBS) $(SYSTEMD_LIBS) -lm

fuzz/fuzz_stdio_entry: $(top_srcdir)/tests/fuzz/fuzz_stdio_entry.c $(top_srcdir)/supervisor/stdio_entry.c \
	  $(top_srcdir)/supervisor/stdio_entry.h
	$(AM_V_GEN)$(MKDIR_P) fuzz && $(FUZZ_CC) $(FUZZ_FLAGS) -I$(top_srcdir)/supervisor -o $@ \
	  $(top_srcdir)/tests/fuzz/fuzz_stdio_entry.c $(top_srcdir)/supervisor/stdio_entry.c

fuzz/fuzz_site_host: $(top_srcdir)/tests/fuzz/fuzz_site_host.c $(top_srcdir)/proxy/site.c \
	  $(top_srcdir)/proxy/site.h $(top_srcdir)/proxy/proxy.h $(top_srcdir)/common/xalloc.c
	$(AM_V_GEN)$(MKDIR_P) fuzz && $(FUZZ_CC) $(FUZZ_FLAGS) $(LIBEV_CFLAGS) -o $@ \
	  $(top_srcdir)/tests/fuzz/fuzz_site_host.c $(top_srcdir)/proxy/site.c $(top_srcdir)/common/xalloc.c

fuzz/fuzz_worker_ident: $(top_srcdir)/tests/fuzz/fuzz_worker_ident.c $(top_srcdir)/common/worker_ident.c \
	  $(top_srcdir)/common/worker_ident.h
	$(AM_V_GEN)$(MKDIR_P) fuzz && $(FUZZ_CC) $(FUZZ_FLAGS) -o $@ \
	  $(top_srcdir)/tests/fuzz/fuzz_worker_ident.c $(top_srcdir)/common/worker_ident.c

fuzz/fuzz_accept_enc: $(top_srcdir)/tests/fuzz/fuzz_accept_enc.c $(top_srcdir)/proxy/accept_enc.c \
	  $(top_srcdir)/proxy/accept_enc.h
	$(AM_V_GEN)$(MKDIR_P) fuzz && $(FUZZ_CC) $(FUZZ_FLAGS) -o $@ \
	  $(top_srcdir)/tests/fuzz/fuzz_accept_enc.c $(top_srcdir)/proxy/accept_enc.c

fuzz/fuzz_proxy_proto: $(top_srcdir)/tests/fuzz/fuzz_proxy_proto.c $(top_srcdir)/proxy/proxy_proto.c \
	  $(top_srcdir)/proxy/proxy_proto.h
	$(AM_V_GEN)$(MKDIR_P) fuzz && $(FUZZ_CC) $(FUZZ_FLAGS) -o $@ \
	  $(top_srcdir)/tests/fuzz/fuzz_proxy_proto.c $(top_srcdir)/proxy/proxy_proto.c

fuzz/fuzz_forwarded: $(top_srcdir)/tests/fuzz/fuzz_forwarded.c $(top_srcdir)/worker/forwarded.c \
	  $(top_srcdir)/worker/forwarded.h
	$(AM_V_GEN)$(MKDIR_P) fuzz && $(FUZZ_CC) $(FUZZ_FLAGS) -I$(top_srcdir)/worker -o $@ \
	  $(top_srcdir)/tests/fuzz/fuzz_forwarded.c $(top_srcdir)/worker/forwarded.c

fuzz-build: fuzz/fuzz_http_parse fuzz/fuzz_chunked fuzz/fuzz_differential fuzz/fuzz_static_path \
	fuzz/fuzz_config fuzz/fuzz_stdio_entry fuzz/fuzz_site_host fuzz/fuzz_worker_ident \
	fuzz/fuzz_accept_enc fuzz/fuzz_proxy_proto fuzz/fuzz_forwarded

# Each target gets its dictionary when there is one (tests/fuzz/TARGET.dict).
# One rule per target, so that `make -jN fuzz` runs N of them at once.
FUZZ_RUNS = $(FUZZ_TARGETS:%=fuzz-run-%)
fuzz: $(FUZZ_RUNS)
$(FUZZ_RUNS): fuzz-run-%: fuzz-build
	@$(MKDIR_P) fuzz/corpus-$* fuzz/artifacts
	@dict=$(abs_top_srcdir)/tests/fuzz/$*.dict; \
	if test -f $$dict; then dict=-dict=$$dict; else dict=; fi; \
	echo "fuzz: $* for $(FUZZ_SECONDS) s"; \
	./fuzz/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	  -print_final_stats=1 $$dict -artifact_prefix=fuzz/artifacts/$*- \
	  fuzz/corpus-$* $(abs_top_srcdir)/tests/fuzz/corpus/$* >fuzz/$*.log 2>&1 || \
	  { tail -n 40 fuzz/$*.log; echo "fuzz: $* FAILED (fuzz/$*.log)"; exit 1; }; \
	echo "fuzz: $* clean, `grep -h '^stat::number_of_executed_units' fuzz/$*.log | awk '{ print $$2 }'` runs"
.PHONY: $(FUZZ_RUNS)

# Replays every committed crash reproducer through the libFuzzer builds.
fuzz-regress: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  d=$(abs_top_srcdir)/tests/fuzz/regress/$$t; \
	  if test -d $$d && test -n "`ls $$d`"; then ./fuzz/fuzz_$$t $$d/*; fi; \
	done

fuzz-clean:
	rm -rf fuzz

.PHONY: fuzz fuzz-build fuzz-regress fuzz-clean

# The same targets without libFuzzer (tests/fuzz/replay.c gives them a
# main), built by `make check` with the project's compiler and flags.
check_PROGRAMS += tests/fuzz/replay_http_parse tests/fuzz/replay_chunked tests/fuzz/replay_differential \
	tests/fuzz/replay_static_path tests/fuzz/replay_config tests/fuzz/replay_stdio_entry \
	tests/fuzz/replay_site_host tests/fuzz/replay_worker_ident tests/fuzz/replay_accept_enc tests/fuzz/replay_proxy_proto tests/fuzz/replay_forwarded
tests_fuzz_replay_http_parse_SOURCES = tests/fuzz/fuzz_http_parse.c tests/fuzz/replay.c
tests_fuzz_replay_http_parse_CPPFLAGS = $(AM_CPPFLAGS) $(LLHTTP_CFLAGS)
tests_fuzz_replay_http_parse_LDADD = libappstack.a $(LLHTTP_LDADD)
tests_fuzz_replay_chunked_SOURCES = tests/fuzz/fuzz_chunked.c tests/fuzz/replay.c
tests_fuzz_replay_chunked_CPPFLAGS = $(AM_CPPFLAGS) $(LLHTTP_CFLAGS)
tests_fuzz_replay_chunked_LDADD = libappstack.a $(LLHTTP_LDADD)
tests_fuzz_replay_differential_SOURCES = tests/fuzz/fuzz_differential.c proxy/fwd_head.c proxy/fwd_head.h \
	proxy/buf.c proxy/buf.h proxy/headw.h tests/fuzz/replay.c
tests_fuzz_replay_differential_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/proxy $(LLHTTP_CFLAGS)
tests_fuzz_replay_differential_LDADD = libappstack.a $(LLHTTP_LDADD)
tests_fuzz_replay_static_path_SOURCES = tests/fuzz/fuzz_static_path.c proxy/static_path.c proxy/static_path.h \
	tests/fuzz/replay.c
tests_fuzz_replay_static_path_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/proxy
tests_fuzz_replay_static_path_LDADD = libappstack.a
tests_fuzz_replay_config_SOURCES = tests/fuzz/fuzz_config.c tests/fuzz/replay.c
tests_fuzz_replay_config_CPPFLAGS = $(AM_CPPFLAGS) $(INIH_CFLAGS)
tests_fuzz_replay_config_LDADD = $(APPSTACK_LIBS) -lm
tests_fuzz_replay_stdio_entry_SOURCES = tests/fuzz/fuzz_stdio_entry.c supervisor/stdio_entry.c \
	supervisor/stdio_entry.h tests/fuzz/replay.c
tests_fuzz_replay_stdio_entry_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/supervisor
tests_fuzz_replay_site_host_SOURCES = tests/fuzz/fuzz_site_host.c proxy/site.c proxy/site.h tests/fuzz/replay.c
tests_fuzz_replay_site_host_LDADD = libappstack.a
tests_fuzz_replay_site_host_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/proxy $(LLHTTP_CFLAGS) $(LIBEV_CFLAGS)
tests_fuzz_replay_worker_ident_SOURCES = tests/fuzz/fuzz_worker_ident.c tests/fuzz/replay.c
tests_fuzz_replay_worker_ident_LDADD = libappstack.a
tests_fuzz_replay_accept_enc_SOURCES = tests/fuzz/fuzz_accept_enc.c proxy/accept_enc.c proxy/accept_enc.h \
	tests/fuzz/replay.c
tests_fuzz_replay_accept_enc_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/proxy
tests_fuzz_replay_proxy_proto_SOURCES = tests/fuzz/fuzz_proxy_proto.c proxy/proxy_proto.c proxy/proxy_proto.h \
	tests/fuzz/replay.c
tests_fuzz_replay_proxy_proto_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/proxy
tests_fuzz_replay_forwarded_SOURCES = tests/fuzz/fuzz_forwarded.c worker/forwarded.c worker/forwarded.h \
	tests/fuzz/replay.c
tests_fuzz_replay_forwarded_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/worker
