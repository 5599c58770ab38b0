-- pgTAP: the coordinator's side of cluster mode (src/cluster, DESIGN 9):
-- clusters, liveness, topic registration, the controller's round-robin
-- assignment, drops, cluster_fence, privileges; and that single-broker
-- mode ignores the cluster tables.
--
-- Brokers are simulated in this session: a registry row with member = true
-- and the broker's liveness lock, taken here.  The test's own worker runs
-- in single-broker mode (cluster 'default'), so it never touches the
-- cluster 'pgtap' used here.  Everything is rolled back (the session's
-- advisory locks end with it).

\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;

BEGIN;
SELECT plan(58);

CREATE FUNCTION pg_temp.cid() RETURNS int LANGUAGE sql AS
$$ SELECT id FROM commitlog.clusters WHERE name = 'pgtap' $$;
-- make broker b of cluster pgtap alive (this session holds its lock)
CREATE FUNCTION pg_temp.alive(b int) RETURNS void LANGUAGE sql AS $$
	INSERT INTO commitlog.broker_registry (cluster_id, broker_id, conninfo, member)
	VALUES (pg_temp.cid(), b, 'host=b' || b, true) ON CONFLICT DO NOTHING;
	SELECT pg_advisory_lock(1129070162 + pg_temp.cid() - 1, b);
$$;
CREATE FUNCTION pg_temp.assignment(topic text) RETURNS TABLE (p int, leader int, replicas int[], isr int[])
LANGUAGE sql AS $$
	SELECT p.partition, p.leader, p.replicas, p.isr
	  FROM commitlog.cluster_partitions p JOIN commitlog.cluster_topics t ON t.id = p.topic_id
	 WHERE t.name = topic AND t.cluster_id = pg_temp.cid() ORDER BY 1
$$;

-- clusters
SELECT is((SELECT name FROM commitlog.clusters WHERE id = 1), 'default', 'cluster 1 is default');
SELECT ok(commitlog.cluster_join('pgtap') > 1, 'cluster_join creates a cluster');
SELECT is(commitlog.cluster_join('pgtap'), pg_temp.cid(), '... and returns the same id again');
SELECT is((SELECT epoch FROM commitlog.controller_state WHERE cluster_id = pg_temp.cid()), 0::bigint,
          '... with its own controller state, epoch 0');

-- liveness and the replication factor
SELECT is(commitlog.cluster_live_brokers(pg_temp.cid()), '{}'::int[], 'no live broker yet');
SELECT throws_ok($$SELECT commitlog.cluster_create_topic('pgtap', 't0', 1, 1, '{}')$$, '22023',
                 'replication factor 1 is larger than the number of available brokers (0)',
                 'no live broker: refused');
SELECT pg_temp.alive(11);
SELECT pg_temp.alive(12);
INSERT INTO commitlog.broker_registry (cluster_id, broker_id, member) VALUES (pg_temp.cid(), 13, true);
INSERT INTO commitlog.broker_registry (cluster_id, broker_id, member) VALUES (pg_temp.cid(), 14, false);
SELECT pg_advisory_lock(1129070162 + pg_temp.cid() - 1, 14);
SELECT is(commitlog.cluster_live_brokers(pg_temp.cid()), '{11,12}'::int[],
          'live brokers: members holding their lock (13 holds none, 14 is no member)');
SELECT throws_ok($$SELECT commitlog.cluster_create_topic('pgtap', 't0', 1, 3, '{}')$$, '22023',
                 'replication factor 3 is larger than the number of available brokers (2)',
                 'replication_factor above the live brokers: refused');
SELECT pg_temp.alive(13);

-- registration and assignment
SELECT lives_ok($$SELECT commitlog.cluster_create_topic('pgtap', 'a', 3, 2, '{}')$$, 'topic a registered');
SELECT throws_ok($$SELECT commitlog.cluster_create_topic('pgtap', 'a', 1, 1, '{}')$$, '42710',
                 'topic "a" already exists', 'a second topic a in the cluster: 42710');
SELECT ok((SELECT id FROM commitlog.cluster_topics WHERE name = 'a') >= 1048576, 'cluster topic ids start at 1048576');
SELECT is((SELECT count(*) FROM pg_temp.assignment('a') WHERE replicas IS NULL), 3::bigint,
          'unassigned until the controller runs');
SELECT is(commitlog.cluster_assign(pg_temp.cid()), 3, 'cluster_assign assigns three partitions');
SELECT results_eq($$SELECT p, leader, replicas, isr FROM pg_temp.assignment('a')$$,
                  $$VALUES (0, 11, '{11,12}'::int[], '{11,12}'::int[]),
                           (1, 12, '{12,13}'::int[], '{12,13}'::int[]),
                           (2, 13, '{13,11}'::int[], '{13,11}'::int[])$$,
                  'round-robin: each broker leads one partition, replicas follow it');
SELECT is((SELECT count(*) FROM commitlog.cluster_leader_epochs e JOIN commitlog.cluster_topics t ON t.id = e.topic_id
            WHERE t.name = 'a' AND e.leader_epoch = 0 AND e.start_offset = 0), 3::bigint,
          'leader epoch 0 from offset 0 recorded per partition');

SELECT commitlog.cluster_create_topic('pgtap', 'b', 1, 3, '{}');
SELECT commitlog.cluster_assign(pg_temp.cid());
SELECT results_eq($$SELECT leader, replicas FROM pg_temp.assignment('b')$$,
                  $$VALUES (11, '{11,12,13}'::int[])$$, 'a tie in leaderships starts at the first broker');
SELECT commitlog.cluster_create_topic('pgtap', 'c', 2, 1, '{}');
SELECT commitlog.cluster_assign(pg_temp.cid());
SELECT results_eq($$SELECT p, leader FROM pg_temp.assignment('c')$$,
                  $$VALUES (0, 12), (1, 13)$$, 'the next topic starts at a broker leading the fewest partitions');
SELECT is(commitlog.cluster_assign(pg_temp.cid()), 0, 'nothing left to assign');

-- a topic created while too few brokers live waits for them
SELECT commitlog.cluster_create_topic('pgtap', 'd', 1, 3, '{}');
SELECT pg_advisory_unlock(1129070162 + pg_temp.cid() - 1, 13);
SELECT is(commitlog.cluster_assign(pg_temp.cid()), 0, 'fewer live brokers than its replication factor: not assigned');
SELECT pg_advisory_lock(1129070162 + pg_temp.cid() - 1, 13);
SELECT is(commitlog.cluster_assign(pg_temp.cid()), 1, '... until they are back');

-- drops
SELECT lives_ok($$SELECT commitlog.cluster_drop_topic('pgtap', 'c')$$, 'drop c');
SELECT throws_ok($$SELECT commitlog.cluster_drop_topic('pgtap', 'c')$$, '42704',
                 'topic "c" does not exist', 'a topic being dropped cannot be dropped again');
SELECT throws_ok($$SELECT commitlog.cluster_drop_topic('pgtap', 'zz')$$, '42704',
                 'topic "zz" does not exist', 'an unknown topic: 42704');
SELECT commitlog.cluster_assign(pg_temp.cid());
SELECT is((SELECT count(*) FROM commitlog.cluster_topics WHERE name = 'c'), 1::bigint,
          'the controller keeps a dropped topic until its replicas let go');
UPDATE commitlog.cluster_topics SET dropped_on = '{12}' WHERE name = 'c';
SELECT commitlog.cluster_assign(pg_temp.cid());
SELECT is((SELECT count(*) FROM commitlog.cluster_topics WHERE name = 'c'), 1::bigint, '... all of them');
SELECT pg_advisory_unlock(1129070162 + pg_temp.cid() - 1, 13);
SELECT commitlog.cluster_assign(pg_temp.cid());
SELECT is((SELECT count(*) FROM commitlog.cluster_topics WHERE name = 'c'), 0::bigint,
          '... that are alive: a dead replica drops its copy when it returns');
SELECT is((SELECT count(*) FROM commitlog.cluster_partitions p WHERE NOT EXISTS
            (SELECT 1 FROM commitlog.cluster_topics t WHERE t.id = p.topic_id)), 0::bigint,
          'its partitions go with it');

-- fence
SELECT lives_ok($$SELECT commitlog.cluster_fence('pgtap', 0)$$, 'cluster_fence passes the current epoch');
SELECT throws_ok($$SELECT commitlog.cluster_fence('pgtap', 1)$$, '22023', NULL, 'an epoch from the future: 22023');
SELECT throws_ok($$SELECT commitlog.cluster_fence('nosuch', 0)$$, '42704', NULL, 'an unknown cluster: 42704');

-- ISR changes proposed by a leader (issue 7): fenced by leader and leader epoch
CREATE FUNCTION pg_temp.b() RETURNS int LANGUAGE sql AS
$$ SELECT id FROM commitlog.cluster_topics WHERE name = 'b' AND cluster_id = pg_temp.cid() $$;
SELECT lives_ok($$SELECT commitlog.cluster_alter_isr(pg_temp.b(), 0, 11, 0, '{13,11}')$$,
                'the leader at its epoch shrinks the ISR');
SELECT is((SELECT isr FROM pg_temp.assignment('b')), '{11,13}'::int[], '... stored in replica order');
SELECT throws_ok($$SELECT commitlog.cluster_alter_isr(pg_temp.b(), 0, 11, 1, '{11}')$$, 'CL004',
                 'broker 11 is not the leader of partition 0 of topic id ' || pg_temp.b() || ' at leader epoch 1',
                 'another leader epoch: CL004');
SELECT throws_ok($$SELECT commitlog.cluster_alter_isr(pg_temp.b(), 0, 12, 0, '{12}')$$, 'CL004', NULL,
                 'a follower: CL004');
SELECT throws_ok($$SELECT commitlog.cluster_alter_isr(pg_temp.b(), 0, 11, 0, '{12,13}')$$, 'CL004', NULL,
                 'an ISR without its leader: CL004');
SELECT throws_ok($$SELECT commitlog.cluster_alter_isr(pg_temp.b(), 0, 11, 0, '{11,99}')$$, 'CL004', NULL,
                 'an ISR with a broker that is no replica: CL004');
SELECT is((SELECT isr FROM pg_temp.assignment('b')), '{11,13}'::int[], '... none of them changed it');

-- leader election (run by the controller each cycle; README "ISR, acks and failover")
SELECT pg_advisory_lock(1129070162 + pg_temp.cid() - 1, 13);  -- 11, 12, 13 alive
SELECT is(commitlog.cluster_elect(pg_temp.cid()), 0, 'every leader alive: nothing to elect');
SELECT pg_advisory_unlock(1129070162 + pg_temp.cid() - 1, 11);
SELECT ok(commitlog.cluster_elect(pg_temp.cid()) >= 2, 'broker 11 dies: its partitions get new leaders');
SELECT results_eq($$SELECT leader, isr FROM pg_temp.assignment('b')$$, $$VALUES (13, '{13}'::int[])$$,
                  'b: the live in-sync replica 13 wins (12 is alive but not in the ISR); 11 leaves the ISR');
SELECT results_eq($$SELECT p, leader, isr FROM pg_temp.assignment('a') WHERE p = 0$$, $$VALUES (0, 12, '{12}'::int[])$$,
                  'a/0: its follower 12 wins');
SELECT results_eq($$SELECT e.leader_epoch, e.start_offset, e.leader FROM commitlog.cluster_leader_epochs e
                     WHERE e.topic_id = pg_temp.b() ORDER BY 1$$,
                  $$VALUES (0, 0::bigint, 11), (1, NULL::bigint, 13)$$,
                  'a new leader epoch, its start offset left to the new leader');
SELECT is(commitlog.cluster_begin_epoch(pg_temp.b(), 0, 13, 1, 42), 42::bigint, 'the new leader begins its epoch');
SELECT is((SELECT start_offset FROM commitlog.cluster_leader_epochs WHERE topic_id = pg_temp.b() AND leader_epoch = 1),
          42::bigint, '... at its log end');
SELECT is(commitlog.cluster_begin_epoch(pg_temp.b(), 0, 13, 1, 50), 42::bigint,
          '... once: again (after a crash), the recorded start stands');
SELECT throws_ok($$SELECT commitlog.cluster_begin_epoch(pg_temp.b(), 0, 12, 1, 50)$$, 'CL004', NULL,
                 'another broker cannot begin it');
SELECT pg_advisory_unlock(1129070162 + pg_temp.cid() - 1, 13);
SELECT commitlog.cluster_elect(pg_temp.cid());
SELECT results_eq($$SELECT leader, isr FROM pg_temp.assignment('b')$$, $$VALUES (NULL::int, '{13}'::int[])$$,
                  'the last in-sync replica dies: no unclean election of 12, the partition is leaderless');
SELECT pg_advisory_lock(1129070162 + pg_temp.cid() - 1, 13);
SELECT commitlog.cluster_elect(pg_temp.cid());
SELECT results_eq($$SELECT leader, isr FROM pg_temp.assignment('b')$$, $$VALUES (13, '{13}'::int[])$$,
                  '... until it returns, in a new epoch');
SELECT is((SELECT max(leader_epoch) FROM commitlog.cluster_leader_epochs WHERE topic_id = pg_temp.b()), 2,
          '... epoch 2');
UPDATE commitlog.cluster_topics SET config = config || '{"unclean.leader.election.enable": true}'
 WHERE id = pg_temp.b();
SELECT pg_advisory_unlock(1129070162 + pg_temp.cid() - 1, 13);
SELECT commitlog.cluster_elect(pg_temp.cid());
SELECT results_eq($$SELECT leader, isr FROM pg_temp.assignment('b')$$, $$VALUES (12, '{12}'::int[])$$,
                  'unclean.leader.election.enable: the live replica outside the ISR is elected');
SELECT pg_advisory_lock(1129070162 + pg_temp.cid() - 1, 13);
UPDATE commitlog.cluster_topics SET config = config - 'unclean.leader.election.enable' WHERE id = pg_temp.b();
SET LOCAL commitlog.default_unclean_leader_election_enable = 'true';
SELECT pg_advisory_unlock(1129070162 + pg_temp.cid() - 1, 12);
SELECT commitlog.cluster_elect(pg_temp.cid());
SELECT results_eq($$SELECT leader, isr FROM pg_temp.assignment('b')$$, $$VALUES (13, '{13}'::int[])$$,
                  '... or, for a topic without the key, the coordinator''s default_unclean_leader_election_enable');
SET LOCAL commitlog.default_unclean_leader_election_enable = 'false';
SELECT pg_advisory_lock(1129070162 + pg_temp.cid() - 1, 12);
SELECT pg_advisory_lock(1129070162 + pg_temp.cid() - 1, 11);

-- privileges and the replication trigger
CREATE ROLE pgtap_cluster_user;
SELECT ok(NOT has_function_privilege('pgtap_cluster_user', 'commitlog.cluster_assign(int)', 'EXECUTE')
          AND NOT has_function_privilege('pgtap_cluster_user', 'commitlog.cluster_create_topic(text, text, int, int, jsonb)', 'EXECUTE')
          AND NOT has_function_privilege('pgtap_cluster_user', 'commitlog.cluster_fence(text, bigint)', 'EXECUTE')
          AND NOT has_function_privilege('pgtap_cluster_user', 'commitlog.cluster_alter_isr(int, int, int, int, int[])', 'EXECUTE')
          AND NOT has_function_privilege('pgtap_cluster_user', 'commitlog.cluster_elect(int)', 'EXECUTE')
          AND NOT has_function_privilege('pgtap_cluster_user', 'commitlog.cluster_begin_epoch(int, int, int, int, bigint)', 'EXECUTE'),
          'the coordinator functions are not for everyone');
SELECT is((SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'replica_watermark_applied'), 'R',
          'the segment trigger fires only in the apply worker (ENABLE REPLICA)');

-- single-broker mode (this server): the cluster tables are not consulted
SELECT commitlog.create_topic('pgtap_solo');
INSERT INTO commitlog.cluster_assignments
SELECT t.id, t.name, 0, 1, 1, '{}', false, '{99}', 99, '{99}', 0 FROM commitlog.topics t WHERE t.name = 'pgtap_solo';
SELECT is((commitlog.produce('pgtap_solo', 'x'::bytea, partition => 0)).log_offset, 0::bigint,
          'single-broker mode produces whatever cluster_assignments says');
SET LOCAL commitlog.acks = 'all';
SELECT is((commitlog.produce('pgtap_solo', 'y'::bytea, partition => 0)).log_offset, 1::bigint,
          'single-broker mode: acks=all produces as acks=1');
SELECT is(commitlog.await_replication(), 0::bigint,
          'single-broker mode: await_replication has nothing to wait for');
SELECT throws_ok($$SELECT commitlog.await_replication(-1)$$, '22023', 'timeout_ms must not be negative',
                 'a negative timeout: 22023');
SELECT throws_ok($$SET LOCAL commitlog.acks = '2'$$, '22023', NULL, 'commitlog.acks is 1 or all');


SELECT * FROM finish();
ROLLBACK;
