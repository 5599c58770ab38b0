/*-------------------------------------------------------------------------
 *
 * cache.c
 *		Per-backend caches of the registry: parsed schemas by id, and each
 *		topic's subjects (the ids of their versions).
 *
 * Produce asks for every call whether the topic has a subject, so the
 * answer, "no" included, is cached per topic; a topic without subjects
 * then costs one string comparison per record.  register_schema sends a
 * relcache invalidation of commitlog.schema_versions, which every backend
 * receives at its next lock or transaction start (topic_cache.c relies on
 * the same); the callback only marks the caches stale, and the next lookup
 * drops them, so a pointer handed out stays valid while it is in use.
 *
 * Schemas never change once registered, but their ids are reused after
 * DROP EXTENSION and CREATE EXTENSION: dropping the table invalidates it
 * too, and everything is forgotten.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commitlog.h"
#include "executor/spi.h"
#include "schemas/schemas.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

typedef struct IdEntry
{
	int32		id;				/* hash key */
	AvroSchema *schema;
} IdEntry;

typedef struct TopicEntry
{
	char		name[NAMEDATALEN];	/* hash key */
	SchemasSubject value;
	SchemasSubject key;
} TopicEntry;

static MemoryContext schemas_cxt = NULL;
static HTAB *by_id = NULL;
static HTAB *by_topic = NULL;
static TopicEntry *last_topic = NULL;
static bool stale = false;
static bool callback_registered = false;
static Oid	versions_relid = InvalidOid;

/* Relcache callback: a registration (or DROP EXTENSION) happened. */
static void
schemas_inval(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == versions_relid)
		stale = true;
}

/* Drop stale caches and make empty ones as needed. */
static void
cache_ready(void)
{
	HASHCTL		ctl;
	Oid			nsp;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(schemas_inval, (Datum) 0);
		callback_registered = true;
	}
	if (stale && schemas_cxt != NULL)
	{
		/* the schemas' contexts are children: their reset callbacks free the library's objects */
		MemoryContextDelete(schemas_cxt);
		schemas_cxt = NULL;
		by_id = by_topic = NULL;
		last_topic = NULL;
	}
	stale = false;
	if (schemas_cxt != NULL)
		return;

	schemas_cxt = AllocSetContextCreate(CacheMemoryContext, "commitlog schema registry cache",
										ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(IdEntry);
	ctl.hcxt = schemas_cxt;
	by_id = hash_create("commitlog schemas by id", 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(TopicEntry);
	by_topic = hash_create("commitlog schemas by topic", 16, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	nsp = get_namespace_oid(COMMITLOG_SCHEMA, true);
	versions_relid = OidIsValid(nsp) ? get_relname_relid("schema_versions", nsp) : InvalidOid;
}

/* The registry's versions table (its invalidation resets every cache). */
Oid
SchemasVersionsRelid(void)
{
	cache_ready();
	return versions_relid;
}

/* The parsed schema with this id; NULL (or an error) when there is none. */
AvroSchema *
SchemasById(int32 id, bool missing_ok)
{
	IdEntry    *e;
	AvroSchema *s = NULL;
	bool		found;
	int			nestlevel;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(id)};

	cache_ready();
	e = hash_search(by_id, &id, HASH_FIND, NULL);
	if (e)
		return e->schema;

	nestlevel = CatalogBegin();
	if (CatalogRead("SELECT schema FROM commitlog.schemas WHERE id = $1", 1, argtypes, args, 1) == 1)
	{
		char	   *text = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		s = SchemasParse(text, strlen(text), schemas_cxt);
		s->id = id;
	}
	CatalogEnd(nestlevel);
	if (s == NULL)
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("schema %d is not registered", id)));
	}
	e = hash_search(by_id, &id, HASH_ENTER, &found);
	e->schema = s;
	return s;
}

/* Fill a topic's two subjects from the registry. */
static void
topic_load(const char *topic, TopicEntry *out)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	int			nestlevel;
	uint64		n;

	out->value.subject = MemoryContextStrdup(schemas_cxt, psprintf("%s-value", topic));
	out->key.subject = MemoryContextStrdup(schemas_cxt, psprintf("%s-key", topic));
	out->value.n = out->key.n = 0;
	out->value.ids = out->key.ids = NULL;
	if (!OidIsValid(versions_relid))
		return;

	args[0] = CStringGetTextDatum(out->value.subject);
	args[1] = CStringGetTextDatum(out->key.subject);
	nestlevel = CatalogBegin();
	n = CatalogRead("SELECT subject = $2, schema_id FROM commitlog.schema_versions"
					" WHERE subject IN ($1, $2) ORDER BY subject, version",
					2, argtypes, args, 0);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		SchemasSubject *sub = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull))
			? &out->key : &out->value;

		if (sub->ids == NULL)
			sub->ids = MemoryContextAlloc(schemas_cxt, sizeof(int32) * n);
		sub->ids[sub->n++] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}
	CatalogEnd(nestlevel);
}

/*
 * The "<topic>-value" or "<topic>-key" subject of a topic, with no
 * versions when it has none.  The last topic asked for is answered without
 * a hash lookup: produce asks once per record.
 */
const SchemasSubject *
SchemasSubjectOf(const char *topic, bool key)
{
	TopicEntry *e;
	TopicEntry	loaded;
	bool		found;

	if (!stale && last_topic != NULL && strcmp(last_topic->name, topic) == 0)
		return key ? &last_topic->key : &last_topic->value;

	cache_ready();
	if (strlen(topic) >= NAMEDATALEN)
	{
		/* no topic has such a name: never cached, never with versions */
		static SchemasSubject none = {NULL, 0, NULL};

		none.subject = psprintf("%s-%s", topic, key ? "key" : "value");
		return &none;
	}
	e = hash_search(by_topic, topic, HASH_FIND, NULL);
	while (e == NULL)
	{
		topic_load(topic, &loaded);
		if (stale)
		{
			/* an invalidation arrived while loading: what was loaded is gone */
			cache_ready();
			continue;
		}
		e = hash_search(by_topic, topic, HASH_ENTER, &found);
		e->value = loaded.value;
		e->key = loaded.key;
	}
	last_topic = e;
	return key ? &e->key : &e->value;
}
