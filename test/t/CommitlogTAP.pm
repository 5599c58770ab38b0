# Copyright: pg_commitlog contributors
#
# CommitlogTAP: small helpers shared by the Perl TAP tests in test/t/.
#
# The tests are run by test/run.sh with `prove -I <pgxs perl lib> -I test/t`,
# so `use CommitlogTAP;` finds this file.  Everything here is a thin layer
# over PostgreSQL::Test::Cluster (PG 15):
#
#   commitlog_node($name, %opts)   a started node with pg_commitlog preloaded
#                                  and CREATE EXTENSION done in "postgres"
#   sql_error($node, $db, $sql)    run SQL that must fail; returns
#                                  (sqlstate, full stderr)
#   kill9_postmaster($node)        SIGKILL the postmaster and wait until it
#                                  and every child are gone (so that start()
#                                  does not trip over the old shared memory)
#   dump_partition($node, $db, $topic, $partition)
#                                  every readable record of a partition, one
#                                  line each, through commitlog.fetch
#   quit_quietly($bgpsql)          end a background psql whose server may
#                                  have died under it

package CommitlogTAP;

use strict;
use warnings;

use Exporter 'import';
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(commitlog_node commitlog_brokers sql_error kill9_postmaster dump_partition
  quit_quietly RECORD_COLUMNS);

# Columns of a record as text, for exact comparisons: the timestamp as
# microseconds since the epoch (no time zone or rounding in the way), bytea
# as hex, headers through their text form (NULL shown as <null>).
use constant RECORD_COLUMNS => q{partition, log_offset,
  (extract(epoch from "timestamp") * 1000000)::bigint AS ts_us,
  coalesce(encode(key, 'hex'), '<null>') AS key,
  coalesce(encode(value, 'hex'), '<null>') AS value,
  coalesce(headers::text, '<null>') AS headers};

# A node ready for pg_commitlog: preloaded, max_prepared_transactions = 5
# (so that PREPARE reaches the extension's refusal rather than failing on
# its own), streaming allowed (wal_level = replica, as in production).
# Options: extra_conf => "line\nline", no_start => 1, no_extension => 1,
# no_preload => 1.
sub commitlog_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 1);
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'pg_commitlog'\nmax_prepared_transactions = 5"
	) unless $opts{no_preload};
	$node->append_conf('postgresql.conf', $opts{extra_conf})
	  if defined $opts{extra_conf};
	return $node if $opts{no_start};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION pg_commitlog')
	  unless $opts{no_extension} || $opts{no_preload};
	return $node;
}

# Brokers 1..$count of cluster "default", started, with the extension:
# logical replication and short worker naptimes, then $opts{extra_conf},
# each broker's id and advertised conninfo, and as coordinator the database
# "postgres" of $opts{coordinator} (a node) or, without it, of broker 1.
sub commitlog_brokers
{
	my ($count, %opts) = @_;
	my $conf = "wal_level = logical\n"
	  . "max_worker_processes = 20\n"
	  . "max_logical_replication_workers = 8\n"
	  . "commitlog.worker_naptime = 100\n"
	  . "commitlog.launcher_naptime = 200\n"
	  . ($opts{extra_conf} // '');
	my @nodes = map { commitlog_node("broker$_", no_start => 1, extra_conf => $conf) } 1 .. $count;
	(my $coordinator = ($opts{coordinator} // $nodes[0])->connstr('postgres')) =~ s/'/''/g;
	for my $id (1 .. $count)
	{
		my $node = $nodes[ $id - 1 ];
		(my $self = $node->connstr('postgres')) =~ s/'/''/g;
		$node->append_conf('postgresql.conf',
			    "commitlog.broker_id = $id\n"
			  . "commitlog.coordinator = '$coordinator'\n"
			  . "commitlog.advertised_conninfo = '$self'\n");
		$node->start;
		$node->safe_psql('postgres', 'CREATE EXTENSION pg_commitlog');
	}
	return @nodes;
}

# Run $sql, which must fail.  Returns (sqlstate, stderr); sqlstate is undef
# when the statement unexpectedly succeeded.  VERBOSITY verbose makes psql
# print "ERROR:  <sqlstate>: message".
sub sql_error
{
	my ($node, $db, $sql) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql(
		$db, "\\set VERBOSITY verbose\n$sql",
		stdout => \$out,
		stderr => \$err,
		on_error_stop => 1);
	return (undef, $err) if $rc == 0;
	my ($state) = $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return ($state, $err);
}

# Children of a process, from /proc (Linux).
sub _children
{
	my ($pid) = @_;
	my @kids;
	opendir(my $dh, '/proc') or die "cannot read /proc: $!";
	for my $p (grep { /^\d+$/ } readdir $dh)
	{
		open(my $fh, '<', "/proc/$p/stat") or next;
		my $stat = <$fh>;
		close $fh;
		next unless defined $stat;
		# pid (comm) state ppid ...; comm may contain spaces and parentheses
		$stat =~ s/^.*\)\s+//;
		my (undef, $ppid) = split /\s+/, $stat;
		push @kids, $p if defined $ppid && $ppid == $pid;
	}
	closedir $dh;
	return @kids;
}

# SIGKILL the postmaster, as a crash of the whole server, and wait until the
# postmaster and all its children have exited (the children notice the
# postmaster's death and quit on their own; a new postmaster refuses to
# start while they still hold the old shared memory).
sub kill9_postmaster
{
	my ($node) = @_;
	my $pm = $node->{_pid};
	die "node is not running" unless defined $pm;
	my @pids = ($pm, _children($pm));
	$node->kill9;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (grep { kill(0, $_) } @pids)
	{
		die "processes @pids of the killed server did not exit"
		  if time > $deadline;
		usleep(50_000);
	}
	return;
}

# Every readable record of a partition, from its earliest offset, one line
# per record ("|"-separated RECORD_COLUMNS), in offset order.
sub dump_partition
{
	my ($node, $db, $topic, $partition) = @_;
	my $cols = RECORD_COLUMNS;
	return $node->safe_psql(
		$db, qq{
		SELECT $cols
		  FROM commitlog.fetch('$topic', $partition,
		                       commitlog.earliest_offset('$topic', $partition),
		                       max_records => 1000000, max_bytes => 2147483647)
		 ORDER BY log_offset});
}

# End a background psql session; its server may have crashed meanwhile, so
# psql may exit non-zero or the pipe may be broken: neither is an error here.
sub quit_quietly
{
	my ($bg) = @_;
	eval { $bg->quit; };
	return;
}

1;
