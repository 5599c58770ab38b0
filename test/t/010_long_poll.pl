# Copyright: pg_commitlog contributors
#
# 010_long_poll: wakeups of fetch(..., wait_ms) and consume(..., wait_ms).
#
# A reader with nothing to read sleeps on a condition variable in shared
# memory (DESIGN 4, "Long polling") until a producing transaction ends.
# The isolation tester cannot see that sleep (it only detects lock waits),
# so this test drives the waiter from a background psql and watches it in
# pg_stat_activity (state 'active', wait_event 'Extension').  What must hold:
#
#   - a waiter is woken by another session's committed produce and returns
#     exactly that record, within a few seconds (wait_ms is 60 s, so a lost
#     wakeup shows as a timeout here, not as a slow pass);
#   - a rolled-back produce does not end the wait with a result: the waiter
#     keeps waiting and then returns only the record a later commit makes
#     readable (the rolled-back offset is a gap);
#   - a commit to another partition does not end a fetch of this one;
#   - the same for consume(..., wait_ms), whose position moves past the gap
#     and the record it returns;
#   - pg_cancel_backend and statement_timeout end a wait at once;
#   - consume(..., wait_ms) also returns as soon as records become available
#     to it because another member of the group released the partition
#     (its consuming transaction rolled back, or committed with records left):
#     the issue asks it to wait "until a record is available".

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use CommitlogTAP;

# how long a woken waiter may take to answer (the wakeup itself takes
# milliseconds; this leaves room for a slow machine)
my $WAKE_LIMIT = 5;
# how long a waiter is watched to make sure it keeps waiting
my $QUIET_TIME = 0.5;

my $node = commitlog_node('long_poll');

# A psql running $sql in the background, as application_name $name.  Its
# standard output collects the rows; "WAITER_DONE" follows the statement if
# it succeeds.
sub start_waiter
{
	my ($name, $sql, $setup) = @_;
	my $w = { name => $name, in => '', out => '', err => '' };
	$setup = '' unless defined $setup;
	my @cmd = (
		$node->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr('postgres'));
	$w->{h} = IPC::Run::start(\@cmd, '<', \$w->{in}, '>', \$w->{out}, '2>',
		\$w->{err});
	$w->{in} .= "SET application_name = '$name';\n$setup\n$sql;\n\\echo WAITER_DONE\n\\q\n";
	$w->{h}->pump_nb;
	return $w;
}

# Is the waiter's backend sleeping in the extension's wait right now?
sub sleeping_query
{
	my ($name) = @_;
	return qq{SELECT count(*) = 1 FROM pg_stat_activity
	           WHERE application_name = '$name' AND state = 'active'
	             AND wait_event_type = 'Extension' AND wait_event = 'Extension'};
}

sub wait_until_sleeping
{
	my ($w, $what) = @_;
	ok($node->poll_query_until('postgres', sleeping_query($w->{name})),
		"$what: the waiter sleeps (pg_stat_activity: active, wait_event Extension)");
	return;
}

# Pump the waiter's output for $secs seconds, or until it has finished.
# Returns true if it finished.
sub pump_for
{
	my ($w, $secs) = @_;
	my $deadline = time + $secs;
	while (time < $deadline)
	{
		$w->{h}->pump_nb if $w->{h}->pumpable;
		return 1 if $w->{out} =~ /WAITER_DONE/ || $w->{err} =~ /ERROR/;
		return 1 unless $w->{h}->pumpable;
		usleep(2_000);
	}
	return 0;
}

# The waiter is still running: no output for $QUIET_TIME, and its backend
# is (back) asleep.
sub still_waiting
{
	my ($w, $what) = @_;
	ok(!pump_for($w, $QUIET_TIME), "$what: the waiter has not returned")
	  or diag "stdout: $w->{out}\nstderr: $w->{err}";
	is($w->{out}, '', "$what: ... and has printed nothing");
	wait_until_sleeping($w, $what);
	return;
}

# Wait for the waiter to finish; returns the seconds it took.
sub finish_waiter
{
	my ($w, $limit) = @_;
	my $t0 = time;
	pump_for($w, $limit);
	my $took = time - $t0;
	if ($w->{h}->pumpable && $w->{out} !~ /WAITER_DONE/ && $w->{err} !~ /ERROR/)
	{
		$w->{h}->kill_kill;
	}
	else
	{
		eval { $w->{h}->finish; };
	}
	return $took;
}

sub rows_of
{
	my ($w) = @_;
	my $out = $w->{out};
	$out =~ s/WAITER_DONE\n?//;
	chomp $out;
	return $out;
}

sub produce
{
	my ($topic, $value, $partition, $commit) = @_;
	my $end = $commit ? 'COMMIT' : 'ROLLBACK';
	my $off = $node->safe_psql(
		'postgres', qq{
		BEGIN;
		SELECT log_offset FROM commitlog.produce('$topic', '$value', partition => $partition);
		$end;});
	return $off;
}

$node->safe_psql('postgres', "SELECT commitlog.create_topic('lp', 2)");
$node->safe_psql('postgres', "SELECT commitlog.produce('lp', 'old', partition => 0)");

#
# fetch: woken by a commit, not by a rollback or another partition
#
{
	my $from = $node->safe_psql('postgres', "SELECT commitlog.latest_offset('lp', 0)");
	is($from, '1', 'fetch: partition 0 ends at 1');
	my $w = start_waiter('fetch_waiter', qq{
		SELECT log_offset || '|' || convert_from(value, 'UTF8')
		  FROM commitlog.fetch('lp', 0, $from, wait_ms => 60000)});
	wait_until_sleeping($w, 'fetch');

	my $rolled = produce('lp', 'rolled back', 0, 0);
	is($rolled, '1', 'fetch: the rolled-back produce took offset 1');
	still_waiting($w, 'fetch after a rolled-back produce');

	produce('lp', 'other partition', 1, 1);
	still_waiting($w, 'fetch after a commit to another partition');

	my $t0 = time;
	my $off = produce('lp', 'committed', 0, 1);
	my $took = finish_waiter($w, $WAKE_LIMIT);
	my $since = time - $t0;
	is($off, '2', 'fetch: the committed produce took offset 2');
	cmp_ok($took, '<', $WAKE_LIMIT, 'fetch: the waiter returned soon after the commit');
	note sprintf('fetch: returned %.3f s after the committing psql returned', $took);
	note sprintf('fetch: %.3f s from before the producing psql started', $since);
	is(rows_of($w), "2|committed",
		'fetch: the waiter returned exactly the committed record');
	is($w->{err}, '', 'fetch: no error');
}

#
# consume: the same, for a group positioned at the end of both partitions
#
{
	$node->safe_psql('postgres', "SELECT commitlog.reset_offsets('glp', 'lp', 'latest')");
	is( $node->safe_psql(
			'postgres', q{
			SELECT string_agg(partition || '=' || committed_offset, ',' ORDER BY partition)
			  FROM commitlog.group_offsets WHERE group_id = 'glp'}),
		'0=3,1=1',
		'consume: the group starts at the end of both partitions');
	my $w = start_waiter('consume_waiter', q{
		SELECT partition || '|' || log_offset || '|' || convert_from(value, 'UTF8')
		  FROM commitlog.consume('glp', 'lp', wait_ms => 60000)});
	wait_until_sleeping($w, 'consume');

	my $rolled = produce('lp', 'rolled back', 0, 0);
	is($rolled, '3', 'consume: the rolled-back produce took offset 3 of partition 0');
	still_waiting($w, 'consume after a rolled-back produce');

	my $off = produce('lp', 'committed', 1, 1);
	my $took = finish_waiter($w, $WAKE_LIMIT);
	is($off, '1', 'consume: the committed produce took offset 1 of partition 1');
	cmp_ok($took, '<', $WAKE_LIMIT, 'consume: the waiter returned soon after the commit');
	note sprintf('consume: returned %.3f s after the committing psql returned', $took);
	is(rows_of($w), "1|1|committed",
		'consume: the waiter returned exactly the committed record');
	is($w->{err}, '', 'consume: no error');
	is( $node->safe_psql(
			'postgres', q{
			SELECT string_agg(partition || '=' || committed_offset, ',' ORDER BY partition)
			  FROM commitlog.group_offsets WHERE group_id = 'glp'}),
		'0=4,1=2',
		'consume: the group moved past the gap in partition 0 and the record in partition 1'
	);
}

#
# a wait is interruptible: pg_cancel_backend, statement_timeout
#
for my $case (
	[ 'fetch', q{SELECT count(*) FROM commitlog.fetch('lp', 0, 4, wait_ms => 60000)} ],
	[ 'consume', q{SELECT count(*) FROM commitlog.consume('glp', 'lp', wait_ms => 60000)} ])
{
	my ($what, $sql) = @$case;

	my $w = start_waiter("cancel_$what", $sql);
	wait_until_sleeping($w, "$what cancel");
	is( $node->safe_psql(
			'postgres', qq{
			SELECT pg_cancel_backend(pid) FROM pg_stat_activity
			 WHERE application_name = 'cancel_$what'}),
		't',
		"$what: pg_cancel_backend signalled the waiter");
	my $took = finish_waiter($w, $WAKE_LIMIT);
	cmp_ok($took, '<', $WAKE_LIMIT, "$what: the cancelled wait ended at once");
	like($w->{err}, qr/canceling statement due to user request/,
		"$what: the waiter reports the cancel");
	unlike($w->{out}, qr/WAITER_DONE/, "$what: the cancelled statement did not succeed");

	my $t0 = time;
	$w = start_waiter("timeout_$what", $sql, "SET statement_timeout = '300ms';");
	$took = finish_waiter($w, $WAKE_LIMIT + 1);
	my $total = time - $t0;
	like($w->{err}, qr/canceling statement due to statement timeout/,
		"$what: statement_timeout ends the wait");
	cmp_ok($total, '<', $WAKE_LIMIT + 1, "$what: ... soon after the 300 ms");
	cmp_ok($total, '>=', 0.3, "$what: ... not before it");
}

# nothing was consumed by the interrupted consumes
is( $node->safe_psql(
		'postgres', q{
		SELECT string_agg(partition || '=' || committed_offset, ',' ORDER BY partition)
		  FROM commitlog.group_offsets WHERE group_id = 'glp'}),
	'0=4,1=2',
	'the interrupted consumes did not move the group');

#
# consume(wait_ms) returns when another member releases a partition that
# has records (rollback, or commit with records left), not only when a
# producer commits.  wait_ms is 10 s here, so a waiter that is not woken
# returns the records only at its deadline.
#
$node->safe_psql('postgres', "SELECT commitlog.create_topic('lp1', 1)");
$node->safe_psql('postgres',
	"SELECT count(*) FROM commitlog.produce_batch('lp1', ARRAY['r0', 'r1']::bytea[])");
for my $end ('ROLLBACK', 'COMMIT')
{
	my $group = "g_release_" . lc $end;
	$node->safe_psql('postgres', "SELECT commitlog.reset_offsets('$group', 'lp1', 'earliest')");
	my $holder = $node->background_psql('postgres');
	$holder->query_safe('BEGIN');
	my $held = $holder->query_safe(qq{
		SELECT string_agg(log_offset::text, ',' ORDER BY log_offset)
		  FROM commitlog.consume('$group', 'lp1', max_records => 1)});
	is($held, '0', "release by $end: the holder read offset 0 and holds the partition");

	my $w = start_waiter("release_$end", qq{
		SELECT log_offset || '|' || convert_from(value, 'UTF8')
		  FROM commitlog.consume('$group', 'lp1', wait_ms => 10000)});
	wait_until_sleeping($w, "release by $end");
	is($w->{out}, '', "release by $end: the waiter got nothing while the partition is held");

	$holder->query_safe($end);
	my $took = finish_waiter($w, 15);
	my $expect = $end eq 'ROLLBACK' ? "0|r0\n1|r1" : "1|r1";
	is(rows_of($w), $expect, "release by $end: the waiter gets the records left");
	cmp_ok($took, '<', $WAKE_LIMIT,
		"release by $end: the waiter returns as soon as the partition is released (took "
		  . sprintf('%.1f', $took) . ' s of its 10 s wait_ms)');
	$holder->quit;
}

$node->stop;
done_testing();
