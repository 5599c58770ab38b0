# Stream processing (DESIGN 13, src/stream): the workers run as a
# superuser; the code of a processor's owner (its handler, the triggers of
# the tables it writes) and of a derived table's owner must never run with
# the worker's rights.
#
# - a deferred constraint trigger that a handler's INSERT queues would fire
#   at the batch's commit, after the worker switched back to its superuser
#   (it made the owner a superuser): each call starts with SET CONSTRAINTS
#   ALL IMMEDIATE, so it fires at the end of the statement, as the owner; a
#   handler that defers it again is refused (the handler runs as a
#   security-restricted operation); either way the batch fails, is
#   dead-lettered, and the owner gains nothing; a deferrable foreign key
#   still works;
# - a temporary table created by one owner's handler would outlive its batch
#   and shadow the tables of the next owner's handler in the same worker:
#   refused too;
# - a derived table is written as its current owner (after ALTER TABLE ...
#   OWNER TO), so the triggers that owner adds run with that owner's rights,
#   not those of the role that created the table.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $node = commitlog_node('stream_security',
	extra_conf => "commitlog.worker_naptime = 100\n"
	  . "commitlog.launcher_naptime = 200\n"
	  . "commitlog.max_processor_workers = 2\n"
	  . "commitlog.processor_idle_timeout = 500\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

sub as_mallory { return $node->safe_psql('postgres', "SET ROLE mallory; $_[0]"); }

q1(q{CREATE ROLE mallory LOGIN});
q1(q{GRANT CREATE ON SCHEMA public TO mallory});
q1(q{GRANT CREATE ON SCHEMA commitlog_topics TO mallory});
q1(q{SELECT commitlog.create_topic('src', 1)});
q1(q{GRANT SELECT, INSERT ON commitlog_topics.src TO mallory});

# --- a deferred trigger queued by the handler --------------------------------
as_mallory(
	q{CREATE FUNCTION escalate() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
        RETURN NULL;
      END $$});
as_mallory(q{CREATE TABLE sink (v bytea)});
as_mallory(
	q{CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON sink
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION escalate()});
# a handler that defers its constraints itself
as_mallory(
	q{CREATE FUNCTION sinker(records commitlog.record[]) RETURNS void LANGUAGE plpgsql AS $$
      BEGIN
        SET CONSTRAINTS ALL DEFERRED;
        INSERT INTO sink SELECT r.value FROM unnest(records) r;
      END $$});
as_mallory(
	q{SELECT commitlog.create_processor('sinker', 'src', 'sinker(commitlog.record[])',
                                        max_retries => 0)});
q1(q{SELECT count(*) FROM commitlog.produce_batch('src', ARRAY['a', 'b']::bytea[])});
ok( $node->poll_query_until('postgres',
		q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'sinker'}),
	'the processor gets through its records');
is(q1(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}),
	'f', 'a deferred trigger queued by the handler never runs as the worker\'s superuser');
is(q1(q{SELECT count(*) FROM sink}), '0', 'the batch that queued it failed');
is( q1(
		q{SELECT string_agg(convert_from(h.value, 'UTF8'), ',')
            FROM commitlog.fetch('src.dlq', 0, 0) f, unnest(f.headers) h
           WHERE h.key = 'commitlog.error.message'}),
	'cannot fire deferred trigger within security-restricted operation,'
	  . 'cannot fire deferred trigger within security-restricted operation',
	'its records are in the dead-letter topic, with the reason');
as_mallory(q{SELECT commitlog.drop_processor('sinker')});

# a handler that leaves the trigger deferred: it fires at once, as the owner
as_mallory(
	q{CREATE FUNCTION plain_sinker(records commitlog.record[]) RETURNS void LANGUAGE sql AS $$
      INSERT INTO sink SELECT r.value FROM unnest(records) r $$});
as_mallory(
	q{SELECT commitlog.create_processor('plain_sinker', 'src', 'plain_sinker(commitlog.record[])',
                                        max_retries => 0, dead_letter_topic => 'plain.dlq')});
ok( $node->poll_query_until('postgres',
		q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'plain_sinker'}),
	'a processor whose table has a deferred trigger gets through its records');
is( q1(
		q{SELECT rolsuper, (SELECT count(*) FROM sink),
                 (SELECT string_agg(convert_from(h.value, 'UTF8'), ',')
                    FROM commitlog.fetch('plain.dlq', 0, 0) f, unnest(f.headers) h
                   WHERE h.key = 'commitlog.error.sqlstate')
            FROM pg_roles WHERE rolname = 'mallory'}),
	'f|0|42501,42501',
	'... the trigger ran as the owner, at the end of the statement, and failed: dead letters');
as_mallory(q{SELECT commitlog.drop_processor('plain_sinker')});

# a deferrable foreign key still works (checked at the end of each statement)
as_mallory(q{CREATE TABLE parent (id bytea PRIMARY KEY)});
as_mallory(
	q{CREATE TABLE child (pid bytea REFERENCES parent DEFERRABLE INITIALLY DEFERRED)});
as_mallory(
	q{CREATE FUNCTION with_fk(records commitlog.record[]) RETURNS void LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO parent SELECT r.value FROM unnest(records) r;
        INSERT INTO child SELECT r.value FROM unnest(records) r;
      END $$});
as_mallory(
	q{SELECT commitlog.create_processor('with_fk', 'src', 'with_fk(commitlog.record[])',
                                        max_retries => 0, dead_letter_topic => 'fk.dlq')});
ok( $node->poll_query_until('postgres',
		q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'with_fk'}),
	'a processor writing a table with a deferrable foreign key gets through its records');
is( q1(q{SELECT count(*), (SELECT count(*) FROM commitlog.fetch('fk.dlq', 0, 0)) FROM child}),
	'2|0', '... and they took effect, none dead-lettered');

# --- a temporary table left for the next handler -------------------------------
as_mallory(
	q{CREATE FUNCTION squatter(records commitlog.record[]) RETURNS void LANGUAGE plpgsql AS $$
      BEGIN
        CREATE TEMP TABLE IF NOT EXISTS victim_log (v bytea);
      END $$});
as_mallory(
	q{SELECT commitlog.create_processor('squatter', 'src', 'squatter(commitlog.record[])',
                                        max_retries => 0, dead_letter_topic => 'squat.dlq')});
ok( $node->poll_query_until('postgres',
		q{SELECT lag = 0 FROM commitlog.processors WHERE name = 'squatter'}),
	'a handler creating a temporary table gets through its records');
is( q1(
		q{SELECT count(*), min(convert_from(h.value, 'UTF8'))
            FROM commitlog.fetch('squat.dlq', 0, 0) f, unnest(f.headers) h
           WHERE h.key = 'commitlog.error.message'}),
	'2|cannot create temporary table within security-restricted operation',
	'... because it may not: each of them is dead-lettered');

# --- a derived table given to another role -------------------------------------
q1(q{SELECT commitlog.create_topic('kv', 1)});
q1(q{SELECT commitlog.create_table('kv', 'kv_table')});
q1(q{ALTER TABLE kv_table OWNER TO mallory});
q1(q{GRANT SELECT ON commitlog_topics.kv TO mallory});
as_mallory(q{CREATE TABLE writers (usr text)});
as_mallory(
	q{CREATE FUNCTION note_writer() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO public.writers VALUES (current_user);
        RETURN NULL;
      END $$});
as_mallory(
	q{CREATE TRIGGER note AFTER INSERT ON kv_table FOR EACH ROW EXECUTE FUNCTION note_writer()});
q1(q{SELECT commitlog.produce('kv', 'v'::bytea, 'k'::bytea)});
ok( $node->poll_query_until('postgres',
		q{SELECT lag = 0 FROM commitlog.derived_tables WHERE table_name = 'kv_table'::regclass}),
	'the derived table catches up');
is(q1(q{SELECT string_agg(usr, ',') FROM writers}),
	'mallory', 'its new owner\'s trigger runs as that owner, not as the role that created it');

done_testing();
