# Copyright: pg_commitlog contributors
#
# 001_crash_recovery: committed records and offsets survive crashes, and
# offsets are never handed out twice (DESIGN 4, invariant 4).
#
# Three kinds of crash, one after the other on the same server, each after
# the same mixed workload (batches, single records, keys, headers, explicit
# timestamps, NULL values, a multi-partition transaction, a rolled-back
# transaction, and a transaction still open at the moment of the crash):
#   1. pg_ctl stop -m immediate (SIGQUIT to the postmaster: no checkpoint,
#      no shutdown record);
#   2. SIGKILL of the postmaster (the children die on postmaster death;
#      the next start does crash recovery);
#   3. SIGKILL of the backend that holds the open producing transaction (the
#      postmaster resets every backend and re-creates shared memory, so the
#      in-memory offset state is rebuilt without a new postmaster).
# After each one:
#   - every committed record is there, identical (partition, offset,
#     timestamp, key, value, headers), and nothing else is: rolled-back and
#     in-flight records are gone;
#   - latest_offset did not go backwards;
#   - a new record gets an offset strictly above every offset ever handed
#     out before the crash, including those of the rolled-back transaction
#     and of the transaction open at the crash (an allocator restarting from
#     max(log_offset) + 1 would reuse them, and consumers that already moved
#     past them would skip the new records).
# Records of earlier rounds are re-checked after each later crash.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use List::Util qw(max);
use CommitlogTAP;

# Cluster.pm turns restart_after_crash off; round 3 needs the postmaster's
# own crash-restart.
my $node = commitlog_node('crash', extra_conf => 'restart_after_crash = on');
my $topic = 'crash';
my @partitions = (0, 1, 2);
$node->safe_psql('postgres', "SELECT commitlog.create_topic('$topic', 3)");

# highest offset ever handed out per partition (committed or not)
my %max_handed = map { $_ => -1 } @partitions;
# every committed offset per partition
my %committed;

# "partition|offset" lines -> list of [partition, offset]
sub positions
{
	my ($text) = @_;
	return map { [ split /\|/ ] } grep { length } split /\n/, $text;
}

sub note_handed
{
	my ($into, @pos) = @_;
	for my $p (@pos)
	{
		my ($part, $off) = @$p;
		$max_handed{$part} = max($max_handed{$part}, $off);
		push @{ $into->{$part} }, $off if $into;
	}
	return;
}

# The committed part of the workload; returns the positions it got.
sub produce_committed
{
	my ($round) = @_;
	my @pos;

	# a batch with keys (some NULL) to partition 0, and one to partition 1
	push @pos, positions(
		$node->safe_psql(
			'postgres', qq{
			SELECT partition, log_offset FROM commitlog.produce_batch('$topic',
			  ARRAY(SELECT convert_to('$round batch ' || g, 'UTF8') FROM generate_series(1, 20) g),
			  ARRAY(SELECT CASE WHEN g % 3 = 0 THEN NULL ELSE convert_to('k' || g, 'UTF8') END
			          FROM generate_series(1, 20) g),
			  partition => 0);
			SELECT partition, log_offset FROM commitlog.produce_batch('$topic',
			  ARRAY['$round x', NULL, '$round z']::bytea[], partition => 1);}));

	# single records in their own transactions, partition chosen by key
	push @pos, positions(
		$node->safe_psql(
			'postgres',
			join(
				"\n",
				map {
					"SELECT partition, log_offset FROM commitlog.produce('$topic', "
					  . "'$round single $_'::text, key => 'key-$_'::bytea);"
				} 1 .. 10)));

	# per-message headers, explicit timestamps and a tombstone to partition 2
	push @pos, positions(
		$node->safe_psql(
			'postgres', qq{
			SELECT partition, log_offset FROM commitlog.produce_messages('$topic', ARRAY[
			  ROW('k1', '$round m1', ARRAY[ROW('h', '\\x01')::commitlog.header], 2,
			      '2001-02-03 04:05:06.789012+00')::commitlog.message,
			  ROW('k2', NULL, NULL, 2, '1999-12-31 23:59:59+00')::commitlog.message,
			  ROW(NULL, '$round m3', ARRAY[ROW('a', NULL), ROW('b', '\\xff00')]::commitlog.header[],
			      2, NULL)::commitlog.message]);}));

	# one transaction over all partitions
	push @pos, positions(
		$node->safe_psql(
			'postgres', qq{
			BEGIN;
			SELECT partition, log_offset FROM commitlog.produce('$topic', '$round tx 0'::text, partition => 0);
			SELECT partition, log_offset FROM commitlog.produce('$topic', '$round tx 1'::text, partition => 1);
			SELECT partition, log_offset FROM commitlog.produce('$topic', '$round tx 2'::text, partition => 2,
			                                                    ts => '2020-01-01 00:00:00+00');
			COMMIT;}));
	return @pos;
}

sub run_round
{
	my ($round, $crash) = @_;

	my @ok_pos = produce_committed($round);
	note_handed(\%committed, @ok_pos);
	cmp_ok(scalar(@ok_pos), '==', 20 + 3 + 10 + 3 + 3,
		"$round: every committed produce returned a position");

	# rolled back: highest offsets of the partitions at that moment
	my @rb_pos = positions(
		$node->safe_psql(
			'postgres', qq{
			BEGIN;
			SELECT p.partition, p.log_offset
			  FROM generate_series(0, 2) part,
			       LATERAL commitlog.produce_batch('$topic',
			                 ARRAY['rb1', 'rb2', 'rb3']::bytea[], partition => part) p;
			ROLLBACK;}));
	is(scalar(@rb_pos), 9, "$round: rolled-back transaction got 9 positions");
	note_handed(undef, @rb_pos);

	# open at the crash: above the rolled-back ones
	my $open = $node->background_psql('postgres');
	my $open_pid = $open->query_safe('SELECT pg_backend_pid()');
	$open->query_safe('BEGIN');
	my @open_pos = positions(
		$open->query_safe(
			qq{
			SELECT p.partition, p.log_offset
			  FROM generate_series(0, 2) part,
			       LATERAL commitlog.produce_batch('$topic',
			                 ARRAY['open1', 'open2']::bytea[], partition => part) p}));
	is(scalar(@open_pos), 6, "$round: open transaction got 6 positions");
	note_handed(undef, @open_pos);

	# the state a reader sees before the crash
	my (%before, %latest_before);
	for my $p (@partitions)
	{
		$before{$p} = dump_partition($node, 'postgres', $topic, $p);
		$latest_before{$p} = $node->safe_psql('postgres',
			"SELECT commitlog.latest_offset('$topic', $p)");
		my %seen = map { (split /\|/)[1] => 1 } split /\n/, $before{$p};
		my @missing = grep { !$seen{$_} } @{ $committed{$p} };
		is("@missing", '',
			"$round: before the crash, partition $p shows every committed record");
		cmp_ok($latest_before{$p}, '<=', $max_handed{$p} + 1,
			"$round: latest_offset of partition $p is within what was handed out");
	}
	my %uncommitted;
	$uncommitted{ $_->[0] }{ $_->[1] } = 1 for @rb_pos, @open_pos;

	$crash->($open_pid);
	quit_quietly($open);

	for my $p (@partitions)
	{
		my $after = dump_partition($node, 'postgres', $topic, $p);
		is($after, $before{$p},
			"$round: after the crash, partition $p has exactly the same records (offset, timestamp, key, value, headers)"
		);
		my @ghosts = grep { $uncommitted{$p}{ (split /\|/)[1] } }
		  split /\n/, $after;
		is(scalar(@ghosts), 0,
			"$round: no rolled-back or in-flight record of partition $p came back"
		);
		my $latest_after = $node->safe_psql('postgres',
			"SELECT commitlog.latest_offset('$topic', $p)");
		cmp_ok($latest_after, '>=', $latest_before{$p},
			"$round: latest_offset of partition $p did not go backwards ($latest_before{$p} -> $latest_after)"
		);
		cmp_ok($latest_after, '>', $max_handed{$p},
			"$round: latest_offset of partition $p is above every offset handed out before the crash"
		);
		my $new = $node->safe_psql('postgres',
			"SELECT log_offset FROM commitlog.produce('$topic', 'after $round'::text, partition => $p)"
		);
		cmp_ok($new, '>', $max_handed{$p},
			"$round: new offset $new in partition $p is above every offset handed out before the crash ($max_handed{$p})"
		);
		note_handed(\%committed, [ $p, $new ]);
	}
	return;
}

run_round(
	'immediate stop',
	sub {
		$node->stop('immediate');
		$node->start;
	});

run_round(
	'kill -9 postmaster',
	sub {
		kill9_postmaster($node);
		$node->start;
	});

run_round(
	'kill -9 backend',
	sub {
		my ($pid) = @_;
		my $log_offset = -s $node->logfile;
		ok(kill('KILL', $pid), 'sent SIGKILL to the producing backend');
		# the postmaster notices, resets every backend and shared memory,
		# recovers, and accepts connections again
		$node->wait_for_log(qr/all server processes terminated; reinitializing/,
			$log_offset);
		$node->wait_for_log(qr/database system is ready to accept connections/,
			$log_offset);
		ok($node->poll_query_until('postgres', 'SELECT 1', '1'),
			'server accepts connections after the crash-restart');
	});

# Finally, a clean restart keeps everything too.
my %final = map { $_ => dump_partition($node, 'postgres', $topic, $_) } @partitions;
$node->restart;
for my $p (@partitions)
{
	is(dump_partition($node, 'postgres', $topic, $p),
		$final{$p}, "clean restart: partition $p unchanged");
	my @offsets = map { (split /\|/)[1] } split /\n/, $final{$p};
	is_deeply(\@offsets, [ sort { $a <=> $b } @{ $committed{$p} } ],
		"partition $p holds exactly the committed offsets of all rounds");
}

$node->stop;
done_testing();
