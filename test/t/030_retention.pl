# Segments and retention (DESIGN 3 and 7), with the background worker.
#
# - the worker keeps a spare segment ahead of producers: producing far past
#   the first segment never fails, and records land in several segments;
# - retention by size drops whole sealed segments, oldest first, while
#   producers and a consumer run: the consumer, which follows with fetch and
#   restarts at earliest_offset when it gets the out-of-range error, sees
#   every record at or above the final log start offset exactly once, in
#   order, and never one below it;
# - retention by time drops segments whose newest record is older than
#   retention.ms; segment.ms rolls a quiet partition's active segment so
#   that it can expire too;
# - delete_records raises the log start offset at once (readers stop at
#   it) and the worker drops the segments wholly below it;
# - compaction keeps the newest record per key and drops old tombstones,
#   with offsets of kept records unchanged.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use CommitlogTAP;

my $node = commitlog_node('retention',
	extra_conf => "commitlog.worker_naptime = 100\n"
	  . "commitlog.retention_check_interval = 200\n"
	  . "commitlog.launcher_naptime = 200\n"
	  . "log_min_messages = log");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# The worker drops topic's segments wholly below start; the rest records above
# it are all still there.
sub dropped_below
{
	my ($topic, $start, $rest, $what) = @_;
	ok( $node->poll_query_until('postgres',
			qq{SELECT count(*) = 0 FROM commitlog.segments s JOIN commitlog.topics t ON t.id = s.topic_id
			    WHERE t.name = '$topic' AND s.end_offset <= $start}),
		$what);
	is(q1(qq{SELECT count(*) FROM commitlog.fetch('$topic', 0, $start, max_records => 10000)}), $rest,
		"$topic: the records above the log start are all there");
}

# the worker starts for the database within a few seconds
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'pg_commitlog worker'}),
	'the worker runs');

# --- segments ahead of producers -------------------------------------------
q1(q{SELECT commitlog.create_topic('seg', 1, config => '{"segment.bytes": 1024}')});
q1(q{SELECT count(*) FROM commitlog.produce_batch('seg',
       array_fill('0123456789'::bytea, ARRAY[1024]), partition => 0)}) for 1 .. 5;
is(q1(q{SELECT count(*) FROM commitlog.fetch('seg', 0, 0, max_records => 100000)}),
	'5120', 'five blocks of records produced across segment boundaries');
ok(q1(q{SELECT segments >= 4 FROM commitlog.partition_list WHERE topic = 'seg'}) eq 't',
	'the records span several segments');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) >= 1 FROM commitlog.segments s JOIN commitlog.topics t ON t.id = s.topic_id
		   WHERE t.name = 'seg' AND NOT s.sealed AND s.base_offset >
		     (SELECT latest_offset FROM commitlog.partition_list WHERE topic = 'seg')}),
	'a spare segment exists beyond the active one');

# --- offset_for_time over sealed segments ------------------------------------
# Timestamps go back between segments (CreateTime need not increase), so a
# search that skipped a sealed segment by anything but its newest timestamp,
# or stopped at the first segment, would give a different answer than the
# brute-force minimum computed from a full fetch.
# (retention.ms -1: these timestamps are years old, time retention would drop them)
q1(q{SELECT commitlog.create_topic('tix', 1, config => '{"segment.bytes": 1024, "retention.ms": -1}')});
for my $day ('2020-01-01', '2021-01-01', '2019-01-01', '2022-01-01')
{
	q1(qq{SELECT count(*) FROM commitlog.produce_messages('tix', ARRAY(
	        SELECT ROW(NULL, 'v'::bytea, NULL, 0, '$day'::timestamptz + i * interval '1 second')::commitlog.message
	          FROM generate_series(0, 1023) i))});
}
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) >= 3 FROM commitlog.segments s JOIN commitlog.topics t ON t.id = s.topic_id
		   WHERE t.name = 'tix' AND s.sealed AND s.record_count > 0}),
	'offset_for_time: the records lie in several sealed segments');
for my $ts ('2019-01-01 00:10', '2019-06-01', '2020-01-01 00:17', '2020-06-01',
	'2021-01-01 00:00:30', '2021-06-01', '2022-01-01 00:16', '2030-01-01')
{
	is( q1(qq{SELECT commitlog.offset_for_time('tix', 0, '$ts')}),
		q1(qq{SELECT min(log_offset) FROM commitlog.fetch('tix', 0, 0, max_records => 100000)
		       WHERE "timestamp" >= '$ts'}),
		"offset_for_time('$ts') is the first offset at or after it");
}

# --- retention by size while producing and consuming -----------------------
q1(q{SELECT commitlog.create_topic('sized', 1,
       config => '{"segment.bytes": 1024, "retention.bytes": 200000}')});
my $producer = $node->background_psql('postgres', on_error_stop => 1);
my $consumed = '';
my ($next, $restarts, $dups, $order_errors) = (0, 0, 0, 0);
my %seen;
for my $round (1 .. 40)
{
	$producer->query_safe(q{SELECT count(*) FROM commitlog.produce_batch('sized',
	    (SELECT array_agg(convert_to('r' || nextval('rseq')::text, 'UTF8'))
	       FROM generate_series(1, 300)), partition => 0)})
	  if $round > 1;
	$producer->query_safe(q{CREATE SEQUENCE rseq}) if $round == 1;

	# follow: fetch until caught up; restart at earliest on out-of-range
	for (1 .. 20)
	{
		my ($rc, $out, $err) = $node->psql('postgres',
			"SELECT log_offset, convert_from(value, 'UTF8') FROM commitlog.fetch('sized', 0, $next, max_records => 500)"
		);
		if ($rc != 0)
		{
			like($err, qr/out of range/, 'a consumer behind retention gets the out-of-range error')
			  if $restarts == 0;
			$next = q1(q{SELECT commitlog.earliest_offset('sized', 0)});
			$restarts++;
			next;
		}
		last if $out eq '';
		for my $line (split /\n/, $out)
		{
			my ($off, $val) = split /\|/, $line;
			$order_errors++ if $off < $next;
			$dups++ if $seen{$val}++;
			$next = $off + 1;
		}
	}
}
$producer->quit;
is($dups, 0, 'no record was seen twice');
is($order_errors, 0, 'offsets always increased');
ok( $node->poll_query_until('postgres',
		q{SELECT earliest_offset > 0 FROM commitlog.partition_list WHERE topic = 'sized'}),
	'size retention raised the log start offset');
# every record at or above the log start is readable and was seen (the
# consumer kept up except where it was restarted at earliest); retention
# may still raise the log start between reading it and fetching: read again
my ($rc, $readable, $err);
for (1 .. 20)
{
	($rc, $readable, $err) = $node->psql('postgres',
		q{SELECT string_agg(convert_from(value, 'UTF8'), ',' ORDER BY log_offset)
		    FROM commitlog.fetch('sized', 0, commitlog.earliest_offset('sized', 0), max_records => 1000000)});
	last if $rc == 0 || $err !~ /out of range/;
}
is($rc, 0, 'the log from its start is readable') or diag($err);
my @missing = grep { !$seen{$_} } split /,/, $readable;
is(scalar(@missing), 0, 'the consumer saw every record still in the log');
ok( $node->poll_query_until('postgres',
		q{SELECT bool_and(s.end_offset > p.log_start_offset)
		    FROM commitlog.segments s JOIN commitlog.partitions p USING (topic_id, partition)
		    JOIN commitlog.topics t ON t.id = s.topic_id WHERE t.name = 'sized'}),
	'segments below the log start offset were dropped');
my $size = q1(q{SELECT sum(size_bytes) FROM commitlog.partition_list WHERE topic = 'sized'});
# retention.bytes plus the segment retention must keep, the active one and
# the spare: far below the ~1.5 MB produced
cmp_ok($size, '<', 800000, 'the partition stays near retention.bytes');
is(q1(q{SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhdetachpending}), '0', 'no detach is left pending');

# --- retention by time, with segment.ms rolling a quiet partition ---------
q1(q{SELECT commitlog.create_topic('timed', 1,
       config => '{"retention.ms": 1500, "segment.ms": 500}')});
q1(q{SELECT commitlog.produce('timed', 'old', partition => 0)});
ok( $node->poll_query_until('postgres',
		q{SELECT commitlog.earliest_offset('timed', 0) > 0}),
	'time retention removed the expired record, even from a quiet partition');
is(q1(q{SELECT count(*) FROM commitlog.fetch('timed', 0, commitlog.earliest_offset('timed', 0))}),
	'0', 'nothing expired is returned');
my $after = q1(q{SELECT log_offset FROM commitlog.produce('timed', 'new', partition => 0)});
ok($after > 0, 'producing continues above the removed offsets');
is(q1(qq{SELECT convert_from(value, 'UTF8') FROM commitlog.fetch('timed', 0, $after)}),
	'new', 'the new record is readable');

# --- delete_records ---------------------------------------------------------
q1(q{SELECT commitlog.create_topic('del', 1, config => '{"segment.bytes": 1024}')});
q1(q{SELECT count(*) FROM commitlog.produce_batch('del',
       array_fill('x'::bytea, ARRAY[3000]), partition => 0)});
is(q1(q{SELECT commitlog.delete_records('del', 0, 2500)}), '2500',
	'delete_records returns the records it removed');
is(q1(q{SELECT commitlog.earliest_offset('del', 0)}), '2500', 'earliest_offset moved up');
my ($state) = sql_error($node, 'postgres', q{SELECT * FROM commitlog.fetch('del', 0, 0)});
is($state, 'CL001', 'a fetch below the new log start is out of range');
dropped_below('del', 2500, 500, 'the worker dropped the segments wholly below it');

# --- compaction -------------------------------------------------------------
q1(q{SELECT commitlog.create_topic('kv', 1,
       config => '{"cleanup.policy": "compact", "segment.bytes": 1024, "delete.retention.ms": 0}')});
q1(q{SELECT count(*) FROM commitlog.produce_batch('kv',
       (SELECT array_agg(convert_to('v' || i, 'UTF8')) FROM generate_series(1, 3000) i),
       (SELECT array_agg(convert_to('k' || (i % 10), 'UTF8')) FROM generate_series(1, 3000) i),
       partition => 0)});
# a tombstone for k0, then enough records to seal the segments holding it
q1(q{SELECT commitlog.produce('kv', NULL::bytea, key => 'k0', partition => 0)});
q1(q{SELECT count(*) FROM commitlog.produce_batch('kv',
       array_fill('filler'::bytea, ARRAY[2048]), array_fill('other'::bytea, ARRAY[2048]), partition => 0)});
my ($sealed_end) = q1(q{SELECT max(end_offset) FROM commitlog.segments s JOIN commitlog.topics t
                          ON t.id = s.topic_id WHERE t.name = 'kv' AND s.sealed});
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 9 FROM commitlog.fetch('kv', 0, commitlog.earliest_offset('kv', 0), max_records => 100000)
		   WHERE convert_from(key, 'UTF8') ~ '^k[0-9]$'}),
	'compaction kept only the newest record per key (and dropped the tombstone of k0)');
is(q1(q{SELECT string_agg(convert_from(key, 'UTF8') || '=' || convert_from(value, 'UTF8') || '@' || log_offset, ',' ORDER BY log_offset)
         FROM commitlog.fetch('kv', 0, 0, max_records => 100000) WHERE convert_from(key, 'UTF8') ~ '^k[0-9]$'}),
	q1(q{SELECT string_agg(k || '=v' || i || '@' || (i - 1), ',' ORDER BY i)
           FROM (SELECT 'k' || (i % 10) AS k, max(i) AS i FROM generate_series(1, 3000) i
                  WHERE i % 10 <> 0 GROUP BY 1) x}),
	'the newest value of every live key is kept at its original offset');
my ($kstate) = sql_error($node, 'postgres', q{SELECT commitlog.produce('kv', 'x')});
is($kstate, '22023', 'a compacted topic refuses records without a key');

# --- a detach waiting behind an old reader does not hold the worker ----------
# DETACH ... CONCURRENTLY waits for transactions that hold locks on the
# partition.  Asked to stop meanwhile, the worker cancels the statement and
# exits at once (it used to sit in PQexec until the statement's 60 s
# timeout); its successor finishes the half-done detach (FINALIZE) once the
# reader is gone.
q1(q{SELECT commitlog.create_topic('held', 1, config => '{"segment.bytes": 1024}')});
q1(q{SELECT count(*) FROM commitlog.produce_batch('held',
       array_fill('h'::bytea, ARRAY[1024]), partition => 0)}) for 1 .. 3;
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) >= 2 FROM commitlog.segments s JOIN commitlog.topics t ON t.id = s.topic_id
		   WHERE t.name = 'held' AND s.sealed}),
	'held: two sealed segments');
my $reader = $node->background_psql('postgres', on_error_stop => 1);
$reader->query_safe('BEGIN');
$reader->query_safe('SELECT count(*) FROM commitlog_topics.held');
my $log_offset = -s $node->logfile;
q1(q{SELECT commitlog.delete_records('held', 0, 2048)});
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity
		   WHERE application_name = 'pg_commitlog retention' AND query LIKE '%DETACH PARTITION%'
		     AND wait_event_type = 'Lock'}),
	'the detach waits for the reader');
my ($wpid) = q1(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_commitlog worker'
                    AND datname = 'postgres'});
q1(qq{SELECT pg_terminate_backend($wpid)});
ok( $node->poll_query_until('postgres',
		qq{SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $wpid}),
	'the worker exits while its detach waits');
# Bounded well below the statement's 60 s timeout, which is what ended the
# detach before the worker cancelled it: the reader still holds its lock.
my $ended = 0;
for (1 .. 300)
{
	$ended = q1(q{SELECT count(*) = 0 FROM pg_stat_activity
	               WHERE application_name = 'pg_commitlog retention' AND query LIKE '%CONCURRENTLY'
	                 AND state = 'active'}) eq 't';
	last if $ended;
	usleep(100_000);
}
ok($ended, 'its detach was cancelled with it, while the reader still holds its lock');
$reader->query_safe('COMMIT');
$reader->quit;
dropped_below('held', 2048, 1024, 'the next worker finishes the detach and drops the segments');

$node->stop;
done_testing();
