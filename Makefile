# pg_commitlog: PGXS build.
#
# The file must parse on a machine that has no PostgreSQL headers yet
# (`make test` and `make demo` install them first), so PGXS is included only
# when pg_config can name it.

EXTENSION = pg_commitlog
EXTVERSION = 0.1.0

MODULE_big = pg_commitlog
OBJS = \
	src/pg_commitlog.o \
	src/offsets/offsets_shmem.o \
	src/offsets/offsets_alloc.o \
	src/topics/catalog.o \
	src/topics/topic_cache.o \
	src/topics/topic_segments.o \
	src/topics/topic_config.o \
	src/topics/topic_ddl.o \
	src/produce/partitioner.o \
	src/produce/produce.o \
	src/fetch/fetch.o \
	src/guard/guard.o \
	src/groups/groups.o \
	src/groups/consume.o \
	src/retention/segments.o \
	src/retention/retention.o \
	src/retention/compaction.o \
	src/bgworker/bgworker.o \
	src/bgworker/launcher.o \
	src/bgworker/worker.o \
	src/bgworker/controller.o \
	src/bgworker/loopback.o \
	src/schemas/parse.o \
	src/schemas/avro_json.o \
	src/schemas/compat.o \
	src/schemas/codec.o \
	src/schemas/cache.o \
	src/schemas/hook.o \
	src/schemas/registry.o \
	src/cluster/cluster.o \
	src/cluster/cluster_sync.o \
	src/cluster/cluster_local.o \
	src/cluster/cluster_isr.o \
	src/cluster/cluster_failover.o \
	src/cluster/cluster_acks.o \
	src/stream/processor.o \
	src/stream/tables.o \
	src/stream/runner.o \
	src/stream/upkeep.o

DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql

# pg_regress suites: sql/<name>.sql against expected/<name>.out
REGRESS = topics config produce partitioner fetch privileges guard groups refill retention schemas stream
REGRESS_OPTS = --inputdir=. --load-extension=$(EXTENSION)

PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wno-sign-compare $(if $(WERROR),-Werror)
PG_CPPFLAGS = -I$(CURDIR)/src -I$(libpq_srcdir)
# libpq: the worker's own connections (coordinator, segment detach)
SHLIB_LINK_INTERNAL = $(libpq)
# libavro (libavro-dev): Avro schemas, encoding and decoding (src/schemas)
SHLIB_LINK = -lavro

EXTRA_CLEAN = results regression.diffs regression.out tmp_check log output_iso

PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

.DEFAULT_GOAL := all

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
all install clean installcheck:
	@echo "PostgreSQL server headers are missing: run 'make test' or 'make demo', which install them" >&2
	@exit 1
endif

# PGXS tracks no header dependencies: rebuild everything when a header changes.
$(OBJS): $(wildcard src/*.h src/*/*.h)

sql/$(EXTENSION)--$(EXTVERSION).sql: sql/$(EXTENSION).sql
	cp $< $@

# The two set-up commands of the README.
.PHONY: test demo bench
test:
	@bash test/run.sh

demo:
	@bash scripts/demo.sh

# The benchmark of DESIGN section 11: BENCH_SCALE=small for a quick smoke run.
bench:
	@BENCH_SCALE=$(or $(BENCH_SCALE),full) bash test/bench/run.sh
