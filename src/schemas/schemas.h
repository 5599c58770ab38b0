/*
 * schemas.h
 *		The schema registry: Avro schemas per subject with versions and
 *		Confluent's compatibility modes, encoding on produce and decoding in
 *		SQL, in Confluent's wire format.
 *
 * Storage: commitlog.schemas (id, type, text), commitlog.schema_subjects
 * (compatibility per subject) and commitlog.schema_versions (subject,
 * version, schema id).  Subjects follow Confluent's TopicNameStrategy:
 * "<topic>-value" and "<topic>-key".
 *
 * The Avro C library (libavro) parses schemas and reads and writes Avro
 * binary.  It ignores field defaults and aliases, so parse.c walks the JSON
 * of each schema alongside the library's parse and keeps them, for the
 * compatibility checker (compat.c) and for encoding records that leave out
 * a field with a default (avro_json.c).
 */
#ifndef COMMITLOG_SCHEMAS_H
#define COMMITLOG_SCHEMAS_H

#include "postgres.h"

#include <avro.h>

#include "lib/stringinfo.h"
#include "topics/topics.h"
#include "utils/jsonb.h"

/* Confluent's wire format: magic byte 0, 4-byte big-endian id, Avro body */
#define SCHEMAS_MAGIC_BYTE		0
#define SCHEMAS_HEADER_BYTES	5

/* A record field as the schema's JSON has it (the library drops these). */
typedef struct SchemaField
{
	const char *name;
	Jsonb	   *default_value;	/* NULL: no default */
	int			naliases;
	const char **aliases;
} SchemaField;

/* A named type (record, enum, fixed) and what the library dropped from it. */
typedef struct SchemaNamed
{
	avro_schema_t schema;		/* the library's node: the lookup key */
	int			naliases;
	const char **aliases;
	int			nfields;		/* records */
	SchemaField *fields;
	const char *enum_default;	/* enums: the default symbol, or NULL */
} SchemaNamed;

/*
 * A parsed schema.  Lives in its own memory context; deleting the context
 * releases the library's objects too (a reset callback), so an error
 * anywhere never leaks them.
 */
typedef struct AvroSchema
{
	int32		id;				/* registry id, or 0 for a candidate */
	avro_schema_t schema;
	avro_value_iface_t *iface;	/* generic class, made on first use */
	avro_value_t value;			/* one reusable instance of iface */
	bool		has_value;
	int			nnamed;
	SchemaNamed *named;
	MemoryContext cxt;
} AvroSchema;

/* What an error message says about where data or a schema came from. */
typedef struct SchemaWhere
{
	const char *subject;		/* or NULL */
	int32		id;				/* 0: unregistered */
} SchemaWhere;

/* parse.c */
extern AvroSchema *SchemasParse(const char *text, int len, MemoryContext parent);
extern const SchemaNamed *SchemasNamedInfo(const AvroSchema *s, avro_schema_t named);
extern avro_schema_t SchemasResolveLink(avro_schema_t s);
extern const char *SchemasBranchName(avro_schema_t s);
extern avro_value_t *SchemasValue(AvroSchema *s);

/* avro_json.c */
extern void SchemasJsonbToAvro(AvroSchema *s, Jsonb *jb, avro_value_t *val,
							   const SchemaWhere *where);
extern void SchemasCheckDefault(AvroSchema *s, avro_schema_t field_schema,
								Jsonb *def, const char *path);
extern Jsonb *SchemasAvroToJsonb(avro_value_t *val);

/* compat.c */
extern char *SchemasIncompatibility(AvroSchema *reader, AvroSchema *writer);

/* codec.c */
extern bytea *SchemasEncode(AvroSchema *s, Jsonb *jb, const SchemaWhere *where);
extern void SchemasValidate(AvroSchema *s, const char *data, int len, const SchemaWhere *where);
extern int32 SchemasWireId(const char *data, int len, const char *what, const SchemaWhere *where);
extern Jsonb *SchemasDecode(AvroSchema *s, const char *data, int len, const SchemaWhere *where);

/* cache.c: a subject's schema ids, by version (ids[n - 1] is the latest) */
typedef struct SchemasSubject
{
	char	   *subject;
	int			n;				/* 0: the subject has no versions */
	int32	   *ids;
} SchemasSubject;

extern AvroSchema *SchemasById(int32 id, bool missing_ok);
extern const SchemasSubject *SchemasSubjectOf(const char *topic, bool key);
extern Oid	SchemasVersionsRelid(void);
extern void SchemasCheckRecord(Topic *topic, Datum key, Datum value, int index, int count);

#endif							/* COMMITLOG_SCHEMAS_H */
