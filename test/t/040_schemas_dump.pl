# Copyright: pg_commitlog contributors
#
# 040_schemas_dump: the schema registry survives pg_dump / pg_restore with
# its ids (DESIGN 3 and 12).
#
# Traps guarded:
#   - ids are referenced from inside the records (the wire format's 4-byte
#     id): a restore that renumbered schemas would make every record decode
#     with the wrong schema, or not at all.  schemas, schema_versions,
#     schema_subjects and schemas_id_seq are extension config tables, so
#     pg_dump keeps their rows and the sequence position;
#   - after the restore, a new schema gets a new id (not one of the
#     restored ones), an identical schema gets its old id back, and the
#     produce hook of the restored database knows the subjects at once;
#   - compatibility modes come back, and still refuse.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CommitlogTAP;

my $node = commitlog_node('schemas_dump');
my $tmp  = PostgreSQL::Test::Utils::tempdir;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql(
	'src', q{
	CREATE EXTENSION pg_commitlog;
	SELECT commitlog.create_topic('users', 2);
	-- a schema that is not a topic's, so the topic's ids do not start at 1
	SELECT commitlog.register_schema('shared', '{"type": "enum", "name": "Plan", "symbols": ["FREE", "PRO"]}');
	SELECT commitlog.register_schema('users-value', '{"type": "record", "name": "User", "fields": [
	  {"name": "id", "type": "long"}, {"name": "name", "type": "string"}]}');
	SELECT commitlog.produce('users', '{"id": 1, "name": "ann"}'::jsonb, partition => 0);
	SELECT commitlog.register_schema('users-value', '{"type": "record", "name": "User", "fields": [
	  {"name": "id", "type": "long"}, {"name": "name", "type": "string"},
	  {"name": "plan", "type": "string", "default": "FREE"}]}');
	SELECT commitlog.produce('users', '{"id": 2, "name": "bob", "plan": "PRO"}'::jsonb, partition => 1);
	SELECT commitlog.set_compatibility('users-value', 'FULL');
	SELECT commitlog.register_schema('users-key', '"long"');
	SELECT commitlog.produce('users', '{"id": 3, "name": "cy"}'::jsonb,
	                         key => commitlog.encode_key('users', '3'), partition => 0);});

my $q_list = q{SELECT subject, version, id, schema_type, schema FROM commitlog.schema_list ORDER BY 1, 2};
my $q_subjects = q{SELECT subject, compatibility FROM commitlog.schema_subjects ORDER BY 1};
my $q_records = q{SELECT partition, log_offset, commitlog.decode_key('users', key),
                         commitlog.decode_value('users', value), encode(value, 'hex')
                    FROM commitlog_topics.users ORDER BY 1, 2};
my %src = (
	list     => $node->safe_psql('src', $q_list),
	subjects => $node->safe_psql('src', $q_subjects),
	records  => $node->safe_psql('src', $q_records));
like($src{records}, qr/"plan": "PRO"/, 'source: records decode');
my $max_id = $node->safe_psql('src', 'SELECT max(id) FROM commitlog.schemas');

my $dump = "$tmp/src.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', 'src' ], 'pg_dump -Fc of the source');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
{
	local $ENV{PGOPTIONS} = '-c commitlog.restore_mode=on';
	$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'dst', $dump ],
		'pg_restore with restore_mode');
}

is($node->safe_psql('dst', $q_list), $src{list}, 'schema_list comes back with the same ids and versions');
is($node->safe_psql('dst', $q_subjects), $src{subjects}, 'compatibility modes come back');
is($node->safe_psql('dst', $q_records), $src{records}, 'restored records decode as before');

# the registry goes on where it stopped
my $new_id = $node->safe_psql('dst',
	q{SELECT commitlog.register_schema('other', '{"type": "fixed", "name": "F", "size": 2}')});
cmp_ok($new_id, '>', $max_id, 'a new schema gets an id above every restored one');
is( $node->safe_psql('dst',
		q{SELECT commitlog.register_schema('another', '{"type": "enum", "name": "Plan", "symbols": ["FREE", "PRO"]}')
		         = (SELECT id FROM commitlog.schema_list WHERE subject = 'shared')}),
	't', 'an identical schema gets its restored id');
my ($rc, $out, $err) = $node->psql('dst',
	q{SELECT commitlog.register_schema('users-value', '{"type": "record", "name": "User", "fields": [
	  {"name": "id", "type": "long"}, {"name": "name", "type": "string"},
	  {"name": "plan", "type": "string", "default": "FREE"}, {"name": "age", "type": "int"}]}')});
like($err, qr/incompatible with version 2 of subject "users-value": field "age"/,
	'the restored FULL mode refuses a field without a default');

# the produce hook of the restored database knows the subjects
($rc, $out, $err) = $node->psql('dst', q{SELECT commitlog.produce('users', 'raw'::bytea, partition => 0)});
like($err, qr/value is not in the schema registry's wire format/, 'restored topic refuses raw bytes');
my $offset = $node->safe_psql('dst',
	q{SELECT log_offset FROM commitlog.produce('users', '{"id": 4, "name": "dee"}'::jsonb, partition => 0)});
is( $node->safe_psql('dst',
		"SELECT commitlog.decode_value('users', value) FROM commitlog.fetch('users', 0, $offset)"),
	'{"id": 4, "name": "dee", "plan": "FREE"}', 'jsonb produced after the restore uses the latest version');

$node->stop;
done_testing();
