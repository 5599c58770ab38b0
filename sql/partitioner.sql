--
-- Kafka's default partitioner (DESIGN 5): commitlog.murmur2 must equal
-- org.apache.kafka.common.utils.Utils.murmur2, and a key must land on
-- (murmur2(key) & 0x7fffffff) % partitions, the partition the Java client
-- picks.  The vectors are test/data/murmur2.tsv (from the shared reference
-- values, Kafka's own test vectors included), copied here as VALUES:
-- key as hex, murmur2 as Java's signed int, partition of 1, 3 and 12.
--
-- Only mismatches are printed: every mismatch query must return no rows.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
\pset null '<null>'
SET client_min_messages = warning;

CREATE TEMP TABLE vectors (key_hex text, murmur2 int, p1 int, p3 int, p12 int);
INSERT INTO vectors VALUES
    ('3231', -973932308, 0, 0, 0),
    ('666f6f626172', -790332482, 0, 0, 6),
    ('612d6c6974746c652d6269742d6c6f6e672d737472696e67', -985981536, 0, 2, 8),
    ('612d6c6974746c652d6269742d6c6f6e6765722d737472696e67', -1486304829, 0, 2, 11),
    ('6c6b6a683233346c68396669756839307932336f697568736166756a6861646f66323239706872396831396838396838', -58897971, 0, 2, 5),
    ('616263', 479470107, 0, 0, 3),
    ('', 275646681, 0, 0, 9),
    ('61', -1563381124, 0, 1, 4),
    ('6162', 316155434, 0, 2, 2),
    ('61626364', -1323649548, 0, 2, 8),
    ('d0bad0bbd18ed187', 2122343024, 0, 2, 8),
    ('00ff80', -1788735621, 0, 2, 11),
    ('04a1e77d12cb5cf53f98e71b9f160c915a2a7b8ddea77bbdbe89a709a6e1c8ec3de34d74d4e065e019659bfa243f3dce5fa1e265ee910f', 496008829, 0, 1, 1),
    ('095b25a03a80bb8ad3d623797db7d1e6f61e193a5671f58da73602d97a7f6119a218130c03f6fc35131098638d', 335170141, 0, 1, 1),
    ('b6bda8301263eec35168a5d4c7d7f0fbd4eba3033ebf3f0db21ac9e055d750c587b3587e44fc83', -15257742, 0, 2, 2),
    ('1dcc7cfbe1c2a0e069a60aa4ec083e4f85f4952bc8', -622746668, 0, 0, 0),
    ('1e4e059df3bfaf1e2db9ac6087fe4566d420c64137f9f56bcb254c7072a862322e', 814304840, 0, 2, 8),
    ('aaf48d3b98d2eeba602c8cafb8df', 1317741069, 0, 0, 9),
    ('362d19ab6f0577bb1c82', -1838634063, 0, 2, 5),
    ('9e', 752298118, 0, 1, 10),
    ('e2fdb907511fb530aa2815b232db', -1576096409, 0, 0, 3),
    ('afec507bc649f2711bc4b4bb581d', -1673499860, 0, 0, 0),
    ('5cf98f1f809242f47d7d54fcc0e3917fd3b5f63b0585ae3ffe9cf59d', 84856823, 0, 2, 11),
    ('8905b9c99cf85fef43ae0cb1c657b2ae576723d78ecbcae3baf6aa7cdc983c10b88011917f6b9ae313bc5432986c7bdae4', -1061093194, 0, 1, 10),
    ('b91f13112197824acd438152649cf3c6b460c4cc260eb9ad2eb276c14107424fd21f0e1f6759a4de9aeff79d4d3859d6b95c0ed421f9d30ad33e8e', -1664567485, 0, 1, 7),
    ('1181edb18abd61680080430ec6191cca6afbf6ae9eb75782b9fc0a40', -1232586, 0, 2, 2),
    ('80b58b192bd165d58632b8f48a1172744d1cebde', 370547845, 0, 1, 1),
    ('505a72fb', 1490632915, 0, 1, 7),
    ('25aff5a54c3a1326', -1530812164, 0, 1, 4),
    ('85371502cee683468750b778d1240dd025f39960e03863d6a388', 1789495184, 0, 2, 8),
    ('377359d29f2944f6c13998ba484a96cfd84b1e', 1812495453, 0, 0, 9),
    ('46dd658caf474b6e85c4d3a6f83c6645e3ee3880aac11242ba0b301d5b0d7629e1548cff', 1286640246, 0, 0, 6),
    ('704a8fe8dd0a6e802275b5cd8eb7a7703909d35d2bab61229feb891af82c8f124275652743ac2ae9b3c917f1bbf4e92c3c5cd3c9f6b2619426', 289989478, 0, 1, 10),
    ('dd239ba9f8b60cd89a1c5db0692560859c00c6a105588fea8fae6d7069cbc04f0f66', 120212235, 0, 0, 3),
    ('c80e53378ec3aa91256cea41a975555b40fb09dbf488b91bc33b431a2015c4a06f56be9bc67c5ca2e4c2f746b0c866bf', 2127070563, 0, 0, 3),
    ('4b6c79d32f642a20871455060506e2cc6ad62c14da290ed07910d630674c571eda6114878de9ff4b9410f782b7f5472c6f7de5f53e852a37', -367499738, 0, 0, 6),
    ('214c77b2b987313b8dad3fdff7440c885431a2e776a9b53e94c14abc0210f5a1208183e8', -1115200359, 0, 2, 5),
    ('73ae67', -1574056456, 0, 1, 4),
    ('10df3c094e4ebf9d49abf39e8ec92d2c892eec3467846ebcf78eefc989716d4b', -1756169712, 0, 2, 8),
    ('731156e7c3150571d323aa79dbd3e3223a60c9e32afd', -1688165653, 0, 1, 7),
    ('a70d727b7db05767ef86dc198c853e1f673bf1144a9e6ea75146365b38df3051bc0544a98eca387e', 1708931218, 0, 1, 10),
    ('449025419d69f66b2d78d3f84bbfede8da9f9ed49d8cdb53b763f6085684', -65806848, 0, 2, 8),
    ('7909fc62abab8d6559f207e3fad7536b23bb71d19251141a8e07b1ce330dc777772f2e8b79837898e444338039774c0b6b', -1177995529, 0, 1, 7),
    ('ebdb0c1b1a3cbb71de186ca5344cffa64c22c251ac412803ac47', -1968641233, 0, 1, 7),
    ('1b5915175c63726dcd9c04ace05fdaf6da35b262180a06f2100747ded9bc1f059b3f9cf15b86d0e922d25548193572f1c5b66e', 584018221, 0, 1, 1),
    ('2f21976a1a02adaa9063bc00d357f3b459a966ee0afb3799475fbb87ef1d0c2013db', -1175151214, 0, 1, 10),
    ('b9bd46144081a83910878bf34d83386c', -739023, 0, 2, 5),
    ('593a5a7c1f9808550de3dc01fd31859675ea784e4604e0d8a997778fafc33b8cceec4126e6cbc720c08ca13db0b49ca948670bb1d509e7d806ded0', -1805678712, 0, 2, 8),
    ('9fb81b456ff547acc00e1199add6f7c9745e49f82d87d088832afe446d27a7d086a29e6b6eb646231bfac8ee2e7964d5aa03a1f02f4d9e03449f882a55d848', -1962358837, 0, 1, 7),
    ('79895686bc7a9ba552c19cf4d6408b7c8d0afdaf8d0819ea5392b373f355d65b76eb3dfbd388db548758602ca4123195272fa0012a1906b377', -1658587228, 0, 1, 4),
    ('0b569ac11cf3e5e12e0b3e22bb11754f3ffc7887316b0b1092b961', -875167556, 0, 0, 0),
    ('9c5438784646cf06a90dc7274eb4c094356b2715fd2397625d92452d5422bcbca6aa90a0ef48', -1114427928, 0, 2, 8),
    ('e8ab83c71df3d1c4b1ae22ac1e2ba2fc0fcb63f4e7396f2e48c67ff85efa81eb54472ba4dd343043369f626b5a3927c7a7e1152ff8e525be68649b2a', -1708377735, 0, 2, 5),
    ('4a0b641d47564b3f4e3e3a485230102de63d8fe7dd9a29ee9f', -1400798880, 0, 2, 8),
    ('13df821d3ae6fab7a291945d513a085707a0bc6a1ec24a7f5e96191201ca550c202e', 1801411623, 0, 0, 3),
    ('bf6529b3e64f52d70693fcf649ebb2149e1566271d0b475a35818e3be05b7a2b5f4fd0149b0a858e9444e40dd1d9d487', 1264947657, 0, 0, 9),
    ('e2824196bd8597138fee', 809499733, 0, 1, 1),
    ('6ba4', -654892914, 0, 2, 2),
    ('604f005225ac2a4c7649293e221f033299f602ab592352c67b0ff9f98a828d0e3433f8000864feebcfc9ffa95e2448ddb0a40a96aa7a', -1562203346, 0, 0, 6),
    ('ed469f430381f5426022477baac0f09eecbc9ff3db', 945128483, 0, 2, 11),
    ('f0f8a6', 1237195649, 0, 2, 5),
    ('635ccf4db2a87c7d129a0594', 661196676, 0, 0, 0),
    ('0053dea2126fbe22d78dcfb02791fbc33ba202794c172fa926c8cee7f066f91b690bc8c7bb459a28a4f4edad1e5ccdbe15f8b4', 515821217, 0, 2, 5),
    ('8e6ac35e02757469d5188aff138daae22907db298f00e280b1fc0325be076cd14e7a79b7e24d14ffa54bae6b7a212086ed255d245168c3ae333296f67d40', 259774075, 0, 1, 7),
    ('7ecd', -804541113, 0, 2, 11),
    ('dd8bbd86ca8385695e557f88b281e40426fe9f39464983b99bd07d8d6ed71e0b21c4f38957c59effea7f', 184995077, 0, 2, 5),
    ('a243bcf754a1f3c1d4072033395f4ac5c5d70db8d3415b7c55b679a1e80939', 862019331, 0, 0, 3),
    ('9304807e413e0fabbc68c45f4907a1b7fd767cf4299c495e2f7724d33e25eb8ac8b9284e6e0407df50178076ff', -170188258, 0, 1, 10),
    ('6aa3d215f4c26c7ea102becc6efd7a7ff1b8c2039b45ebfd82f7753d5416bc399f357f0ae69f7663466d4d462b74e5d4258126', 610716742, 0, 1, 10),
    ('f296c161c9090b0e65797910f107ef021b51a37599cb4842557467', -61849949, 0, 0, 3),
    ('d6b8259f4a3eedfb8de92864ee432d71a62f94464eceb977d05d25256a581817120a9937ab1c0ace', 1517228468, 0, 2, 8),
    ('1f53', 1912658515, 0, 1, 7);

SELECT count(*) AS vectors, count(*) FILTER (WHERE key_hex = '') AS empty_keys,
       count(DISTINCT key_hex) AS distinct_keys
  FROM vectors;

-- murmur2 itself
SELECT key_hex, murmur2 AS expected, commitlog.murmur2(decode(key_hex, 'hex')) AS actual
  FROM vectors
 WHERE commitlog.murmur2(decode(key_hex, 'hex')) IS DISTINCT FROM murmur2;

-- Kafka's own vectors, by their text keys (UtilsTest.testMurmur2)
SELECT k, commitlog.murmur2(convert_to(k, 'UTF8'))
  FROM (VALUES ('21'), ('foobar'), ('a-little-bit-long-string'), ('a-little-bit-longer-string'),
               ('lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8'), ('abc'), ('')) AS v(k);

-- the partition formula over the hash
SELECT key_hex, p1, p3, p12,
       (murmur2 & x'7fffffff'::int) % 1 AS f1,
       (murmur2 & x'7fffffff'::int) % 3 AS f3,
       (murmur2 & x'7fffffff'::int) % 12 AS f12
  FROM vectors
 WHERE (murmur2 & x'7fffffff'::int) % 1 <> p1
    OR (murmur2 & x'7fffffff'::int) % 3 <> p3
    OR (murmur2 & x'7fffffff'::int) % 12 <> p12;

-- partition_for_key on topics with 1, 3 and 12 partitions
SELECT commitlog.create_topic('partitioner_1', 1);
SELECT commitlog.create_topic('partitioner_3', 3);
SELECT commitlog.create_topic('partitioner_12', 12);
SELECT key_hex, p1, p3, p12,
       commitlog.partition_for_key('partitioner_1', decode(key_hex, 'hex')) AS got1,
       commitlog.partition_for_key('partitioner_3', decode(key_hex, 'hex')) AS got3,
       commitlog.partition_for_key('partitioner_12', decode(key_hex, 'hex')) AS got12
  FROM vectors
 WHERE commitlog.partition_for_key('partitioner_1', decode(key_hex, 'hex')) <> p1
    OR commitlog.partition_for_key('partitioner_3', decode(key_hex, 'hex')) <> p3
    OR commitlog.partition_for_key('partitioner_12', decode(key_hex, 'hex')) <> p12;

-- and records produced with those keys land there: one call with every key ...
SELECT v.key_hex, v.p12, b.partition
  FROM (SELECT array_agg(decode(key_hex, 'hex') ORDER BY key_hex) AS keys FROM vectors) a,
       LATERAL commitlog.produce_batch('partitioner_12', a.keys, a.keys) WITH ORDINALITY b(partition, log_offset, i)
  JOIN (SELECT row_number() OVER (ORDER BY key_hex) AS i, * FROM vectors) v USING (i)
 WHERE b.partition <> v.p12;
-- ... and one call per key
SELECT key_hex, p3, (commitlog.produce('partitioner_3', 'v'::bytea, key => decode(key_hex, 'hex'))).partition AS got
  FROM vectors
 WHERE (commitlog.produce('partitioner_3', 'v'::bytea, key => decode(key_hex, 'hex'))).partition <> p3;
-- the stored records agree
SELECT count(*) AS records_12,
       count(*) FILTER (WHERE r.partition <> v.p12) AS misplaced
  FROM commitlog_topics.partitioner_12 r JOIN vectors v ON r.key = decode(v.key_hex, 'hex');
SELECT count(*) AS records_3,
       count(*) FILTER (WHERE r.partition <> v.p3) AS misplaced
  FROM commitlog_topics.partitioner_3 r JOIN vectors v ON r.key = decode(v.key_hex, 'hex');

-- after add_partitions the keys follow the new count (3 -> 12)
SELECT commitlog.add_partitions('partitioner_3', 12);
SELECT key_hex, p12, commitlog.partition_for_key('partitioner_3', decode(key_hex, 'hex')) AS got
  FROM vectors
 WHERE commitlog.partition_for_key('partitioner_3', decode(key_hex, 'hex')) <> p12;

-- large keys, every tail length, and all byte values (no sign extension)
SELECT n, commitlog.murmur2(decode(repeat('ff', n), 'hex')) AS all_ff,
       commitlog.murmur2(decode(repeat('80', n), 'hex')) AS all_80
  FROM generate_series(0, 8) n;
SELECT commitlog.murmur2(decode(repeat('61', 100000), 'hex'));

-- STRICT: NULL in, NULL out; unknown topic
SELECT commitlog.murmur2(NULL);
SELECT commitlog.partition_for_key('partitioner_1', NULL);
SELECT commitlog.partition_for_key(NULL, 'k');
SELECT commitlog.partition_for_key('partitioner_nope', 'k');
-- murmur2 is immutable, partition_for_key reads the topic
SELECT proname, provolatile, proisstrict FROM pg_proc
 WHERE pronamespace = 'commitlog'::regnamespace AND proname IN ('murmur2', 'partition_for_key')
 ORDER BY proname;

SELECT commitlog.drop_topic(t) FROM unnest(ARRAY['partitioner_1', 'partitioner_3', 'partitioner_12']) t;
