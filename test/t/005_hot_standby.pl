# Copyright: pg_commitlog contributors
#
# 005_hot_standby: reading topics on a physical (streaming) standby.
#
# Trap guarded (DESIGN 4): the stable offset comes from shared memory of the
# PRIMARY (its in-flight producing transactions).  A hot standby has none of
# that state: computing a stable offset there (e.g. max(log_offset) + 1)
# could serve a record below which a lower offset commits later, so a
# consumer would skip it.  So fetch, latest_offset, earliest_offset,
# offset_for_time and the partition_list view refuse on a standby with a
# clear error (SQLSTATE 55000, message naming the standby).  Plain SQL on
# the topic tables and on user views over them keeps working (it is only
# SQL over replicated rows), and producing or committing a group offset is
# refused as any write is (25006, read-only transaction).
#
# Then failover: the primary, with a rolled-back tail and a producing
# transaction still open, crashes and the standby is promoted.  The new
# primary must serve every replicated record unchanged and hand out offsets
# above every offset the old primary handed out before the standby caught up
# (its offset state is rebuilt from the replicated sequences, never from
# max(log_offset) + 1, which would reuse the rolled-back and in-flight ones).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $primary = commitlog_node('primary');
$primary->safe_psql(
	'postgres', q{
	SELECT commitlog.create_topic('t', 2);
	SELECT commitlog.produce_batch('t', ARRAY['a', 'b', 'c']::bytea[], partition => 0);
	CREATE VIEW public.t_values AS
	  SELECT partition, log_offset, convert_from(value, 'UTF8') AS v FROM commitlog_topics.t;});

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;

# produced after the backup: must arrive by streaming
$primary->safe_psql(
	'postgres', q{
	SELECT commitlog.produce('t', 'd'::text, partition => 0);
	SELECT commitlog.produce('t', 'e'::text, partition => 1, key => 'k',
	                         headers => ARRAY[ROW('h', '\x01')]::commitlog.header[]);
	SELECT commitlog.commit_offset('g1', 't', 0, 2);});
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');

my $rows_sql = q{SELECT partition, log_offset, encode(key, 'hex'), encode(value, 'hex'),
                        headers::text, "timestamp"
                   FROM commitlog_topics.t ORDER BY partition, log_offset};
my $primary_rows = $primary->safe_psql('postgres', $rows_sql);
is($standby->safe_psql('postgres', $rows_sql),
	$primary_rows,
	'a plain SELECT on the topic table works on the standby and shows the replicated records'
);
like($primary_rows, qr/^0\|3\|.*\n1\|0\|6b\|65\|\{.*\bh\b/m,
	'... including the records produced after the base backup');
is( $standby->safe_psql('postgres',
		q{SELECT string_agg(partition || ':' || log_offset || '=' || v, ',' ORDER BY partition, log_offset)
		    FROM public.t_values}),
	'0:0=a,0:1=b,0:2=c,0:3=d,1:0=e',
	'a user view over the topic works on the standby');
is( $standby->safe_psql('postgres',
		q{SELECT topic || '/' || partitions FROM commitlog.topic_list}),
	't/2', 'topic metadata (topic_list) is readable on the standby');

for my $case (
	[ 'fetch',           q{SELECT * FROM commitlog.fetch('t', 0, 0)} ],
	[ 'latest_offset',   q{SELECT commitlog.latest_offset('t', 0)} ],
	[ 'earliest_offset', q{SELECT commitlog.earliest_offset('t', 0)} ],
	[ 'offset_for_time', q{SELECT commitlog.offset_for_time('t', 0, now())} ],
	[ 'partition_list',  q{SELECT * FROM commitlog.partition_list} ],
	[ 'group_offsets',   q{SELECT * FROM commitlog.group_offsets} ],
	[ 'consume',         q{SELECT * FROM commitlog.consume('g2', 't')} ],
	[ 'reset_offsets',   q{SELECT commitlog.reset_offsets('g1', 't', 'latest')} ])
{
	my ($what, $sql) = @$case;
	my ($state, $err) = sql_error($standby, 'postgres', $sql);
	is($state, '55000', "$what on the standby is refused with SQLSTATE 55000");
	like($err, qr/ERROR:.*standby/,
		"$what on the standby: the message mentions the standby");
}

my ($state, $err) = sql_error($standby, 'postgres',
	q{SELECT commitlog.commit_offset('g1', 't', 0, 1)});
is($state, '25006', 'commit_offset on the standby is refused (read-only, 25006)');
($state, $err) = sql_error($standby, 'postgres',
	q{SELECT commitlog.produce('t', 'x'::text, partition => 0)});
is($state, '25006', 'produce on the standby is refused (read-only, 25006)');
($state, $err) = sql_error($standby, 'postgres',
	q{SELECT commitlog.produce_batch('t', ARRAY['x']::bytea[], partition => 0)});
is($state, '25006', 'produce_batch on the standby is refused (25006)');

# The primary is unaffected: reads and produce go on, and the standby follows.
is( $primary->safe_psql('postgres',
		q{SELECT string_agg(log_offset::text, ',') FROM commitlog.fetch('t', 0, 0)}),
	'0,1,2,3', 'fetch on the primary works');
$primary->safe_psql('postgres',
	q{SELECT commitlog.produce('t', 'f'::text, partition => 0)});
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
is( $standby->safe_psql('postgres',
		q{SELECT count(*) FROM commitlog_topics.t WHERE partition = 0}),
	'5', 'a later record replicates to the standby');

# --- failover ----------------------------------------------------------------
# a rolled-back tail on partition 0, then a transaction left open (partition 1)
my $rolled_back = $primary->safe_psql(
	'postgres', q{
	BEGIN;
	SELECT max(log_offset) FROM commitlog.produce_batch('t', ARRAY['r1', 'r2', 'r3']::bytea[], partition => 0);
	ROLLBACK;});
my $open = $primary->background_psql('postgres');
$open->query_safe('BEGIN');
my $open_offset = $open->query_safe(
	q{SELECT log_offset FROM commitlog.produce('t', 'open'::text, partition => 1)});
my %latest_before = map {
	$_ => $primary->safe_psql('postgres', "SELECT commitlog.latest_offset('t', $_)")
} (0, 1);
is($latest_before{0}, $rolled_back + 1,
	'primary: latest_offset of partition 0 counts the rolled-back tail');
my %records_before =
  map { $_ => dump_partition($primary, 'postgres', 't', $_) } (0, 1);
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('flush'));

$primary->stop('immediate');
quit_quietly($open);
$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
	'the standby is promoted');

for my $p (0, 1)
{
	is(dump_partition($standby, 'postgres', 't', $p),
		$records_before{$p},
		"promoted: partition $p serves exactly the records the primary served");
	my $latest = $standby->safe_psql('postgres',
		"SELECT commitlog.latest_offset('t', $p)");
	cmp_ok($latest, '>=', $latest_before{$p},
		"promoted: latest_offset of partition $p is not below the old primary's");
}
my $new0 = $standby->safe_psql('postgres',
	q{SELECT log_offset FROM commitlog.produce('t', 'new'::text, partition => 0)});
cmp_ok($new0, '>', $rolled_back,
	'promoted: a new record in partition 0 goes above the rolled-back tail');
my $new1 = $standby->safe_psql('postgres',
	q{SELECT log_offset FROM commitlog.produce('t', 'new'::text, partition => 1)});
cmp_ok($new1, '>', $open_offset,
	'promoted: a new record in partition 1 goes above the in-flight offset');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM commitlog.fetch('t', 0, $latest_before{0})"),
	'1',
	'promoted: a consumer at the old latest_offset gets the new record');

$standby->stop;
done_testing();
