/*-------------------------------------------------------------------------
 *
 * topic_config.c
 *		Topic config keys, with Kafka's names and defaults.
 *
 * A topic's config jsonb holds only the keys set on it; everything else
 * comes from the broker-level default, a GUC named after the key
 * (retention.ms -> commitlog.default_retention_ms), as Kafka's topic configs
 * fall back to the broker's log.* settings.  Values are stored typed: JSON
 * numbers for sizes and durations, strings for enums, booleans for flags.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/json.h"
#include <limits.h>

#include "commitlog.h"
#include "lib/stringinfo.h"
#include "topics/topics.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

typedef enum ConfigKind
{
	CFG_LONG,
	CFG_ENUM,
	CFG_BOOL
} ConfigKind;

typedef struct ConfigKey
{
	const char *name;			/* Kafka's key */
	const char *guc;			/* broker default */
	ConfigKind	kind;
	int64		min;			/* CFG_LONG: smallest valid value */
	const char *boot;			/* Kafka's default */
	const char *const *choices; /* CFG_ENUM: valid values, NULL-terminated */
	const char *description;
	char	   *value;			/* the GUC's storage */
} ConfigKey;

static const char *const cleanup_policies[] = {"delete", "compact", "compact,delete", NULL};
static const char *const timestamp_types[] = {"CreateTime", "LogAppendTime", NULL};

static ConfigKey config_keys[] = {
	{"retention.ms", "commitlog.default_retention_ms", CFG_LONG, -1, "604800000", NULL,
	"Default retention.ms: how long records are kept, in milliseconds (-1: forever)."},
	{"retention.bytes", "commitlog.default_retention_bytes", CFG_LONG, -1, "-1", NULL,
	"Default retention.bytes: size a partition may grow to before old segments go (-1: no limit)."},
	{"segment.bytes", "commitlog.default_segment_bytes", CFG_LONG, 14, "1073741824", NULL,
	"Default segment.bytes: size at which a partition's active segment rolls."},
	{"segment.ms", "commitlog.default_segment_ms", CFG_LONG, 1, "604800000", NULL,
	"Default segment.ms: age in milliseconds at which the active segment rolls."},
	{"cleanup.policy", "commitlog.default_cleanup_policy", CFG_ENUM, 0, "delete", cleanup_policies,
	"Default cleanup.policy: delete, compact, or compact,delete."},
	{"max.message.bytes", "commitlog.default_max_message_bytes", CFG_LONG, 0, "1048588", NULL,
	"Default max.message.bytes: the largest record (key, value and headers) accepted."},
	{"message.timestamp.type", "commitlog.default_message_timestamp_type", CFG_ENUM, 0, "CreateTime", timestamp_types,
	"Default message.timestamp.type: CreateTime (the producer's) or LogAppendTime (the broker's)."},
	{"min.insync.replicas", "commitlog.default_min_insync_replicas", CFG_LONG, 1, "1", NULL,
	"Default min.insync.replicas: replicas that must have a record for acks=all."},
	{"delete.retention.ms", "commitlog.default_delete_retention_ms", CFG_LONG, 0, "86400000", NULL,
	"Default delete.retention.ms: how long tombstones are kept in compacted topics."},
	{"unclean.leader.election.enable", "commitlog.default_unclean_leader_election_enable", CFG_BOOL, 0, "false", NULL,
	"Default unclean.leader.election.enable: whether an out-of-sync replica may become leader."},
};

#define NUM_CONFIG_KEYS lengthof(config_keys)

static ConfigKey *
config_key_find(const char *name)
{
	for (int i = 0; i < NUM_CONFIG_KEYS; i++)
		if (strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

static char *
config_key_list(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < NUM_CONFIG_KEYS; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", config_keys[i].name);
	return buf.data;
}

/* Parse a whole string as int64; false if it is not one. */
static bool
parse_int64(const char *s, int64 *result)
{
	char	   *end;
	long long	v;

	if (*s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*result = (int64) v;
	return true;
}

static bool
parse_bool_text(const char *s, bool *result)
{
	if (strcmp(s, "true") == 0)
		*result = true;
	else if (strcmp(s, "false") == 0)
		*result = false;
	else
		return false;
	return true;
}

/*
 * The canonical text of a valid value, or NULL (with *why set) if invalid.
 * Kafka accepts "compact,delete" in either order; we store one spelling.
 */
static const char *
config_canonical(const ConfigKey *key, const char *value, const char **why)
{
	int64		l;
	bool		b;

	switch (key->kind)
	{
		case CFG_LONG:
			if (!parse_int64(value, &l))
			{
				*why = "an integer";
				return NULL;
			}
			if (l < key->min)
			{
				*why = psprintf("an integer of at least " INT64_FORMAT, key->min);
				return NULL;
			}
			return psprintf(INT64_FORMAT, l);
		case CFG_BOOL:
			if (!parse_bool_text(value, &b))
			{
				*why = "true or false";
				return NULL;
			}
			return b ? "true" : "false";
		case CFG_ENUM:
			if (strcmp(value, "delete,compact") == 0 && key->choices == cleanup_policies)
				value = "compact,delete";
			for (const char *const *c = key->choices; *c; c++)
				if (strcmp(*c, value) == 0)
					return *c;
			{
				StringInfoData buf;

				initStringInfo(&buf);
				for (const char *const *c = key->choices; *c; c++)
					appendStringInfo(&buf, "%s\"%s\"", c == key->choices ? "one of " : ", ", *c);
				*why = buf.data;
			}
			return NULL;
	}
	return NULL;
}

/* Validate the GUC value of one key (check hooks cannot tell which key). */
#define CONFIG_CHECK_HOOK(idx) \
static bool \
config_check_##idx(char **newval, void **extra, GucSource source) \
{ \
	const char *why = NULL; \
	if (*newval == NULL || config_canonical(&config_keys[idx], *newval, &why) == NULL) \
	{ \
		GUC_check_errdetail("%s must be %s.", config_keys[idx].guc, why ? why : "set"); \
		return false; \
	} \
	return true; \
}

CONFIG_CHECK_HOOK(0)
CONFIG_CHECK_HOOK(1)
CONFIG_CHECK_HOOK(2)
CONFIG_CHECK_HOOK(3)
CONFIG_CHECK_HOOK(4)
CONFIG_CHECK_HOOK(5)
CONFIG_CHECK_HOOK(6)
CONFIG_CHECK_HOOK(7)
CONFIG_CHECK_HOOK(8)
CONFIG_CHECK_HOOK(9)

static GucStringCheckHook config_check_hooks[] = {
	config_check_0, config_check_1, config_check_2, config_check_3, config_check_4,
	config_check_5, config_check_6, config_check_7, config_check_8, config_check_9,
};

StaticAssertDecl(lengthof(config_check_hooks) == lengthof(config_keys),
				 "one check hook per config key");

void
TopicConfigDefineGucs(void)
{
	for (int i = 0; i < NUM_CONFIG_KEYS; i++)
		DefineCustomStringVariable(config_keys[i].guc,
								   config_keys[i].description,
								   NULL,
								   &config_keys[i].value,
								   config_keys[i].boot,
								   PGC_SUSET,
								   0,
								   config_check_hooks[i], NULL, NULL);
}

/* A JSON scalar as text; NULL for JSON null; error for arrays and objects. */
static char *
jsonb_scalar_text(const char *keyname, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for topic config key \"%s\"", keyname),
					 errdetail("Config values are JSON strings, numbers or booleans."),
					 errhint("Write it as {\"%s\": <value>}.", keyname)));
	}
	return NULL;
}

/* Collect the keys of a config object into vals[] (indexed like config_keys). */
static void
config_collect(Jsonb *config, const char **vals, bool validate)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (config == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(config) || JB_ROOT_IS_SCALAR(config))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic config must be a JSON object"),
				 errhint("Pass config as '{\"retention.ms\": 3600000}'::jsonb, or '{}' for the defaults.")));

	it = JsonbIteratorInit(&config->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *name;
		char	   *text;
		ConfigKey  *key;
		const char *why = NULL;
		const char *canon;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		key = config_key_find(name);
		if (key == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown topic config key \"%s\"", name),
					 errdetail("Valid keys are: %s.", config_key_list())));
		text = jsonb_scalar_text(name, &v);
		if (text == NULL)
		{
			vals[key - config_keys] = NULL; /* null: back to the default */
			continue;
		}
		canon = validate ? config_canonical(key, text, &why) : text;
		if (canon == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value \"%s\" for topic config key \"%s\"", text, name),
					 errdetail("The value of \"%s\" must be %s.", name, why)));
		vals[key - config_keys] = canon;
	}
}

/* Build a jsonb object from vals[], typed by each key's kind. */
static Jsonb *
config_build(const char **vals)
{
	StringInfoData buf;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < NUM_CONFIG_KEYS; i++)
	{
		if (vals[i] == NULL)
			continue;
		appendStringInfo(&buf, "%s\"%s\": ", first ? "" : ", ", config_keys[i].name);
		if (config_keys[i].kind == CFG_ENUM)
			escape_json(&buf, vals[i]);
		else
			appendStringInfoString(&buf, vals[i]);
		first = false;
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * Validate config and merge it over base (NULL for a new topic): unknown
 * keys and bad values are errors, keys set to JSON null go back to the
 * default.  Returns the config to store.
 */
Jsonb *
TopicConfigNormalize(Jsonb *config, Jsonb *base)
{
	const char *vals[NUM_CONFIG_KEYS] = {0};

	config_collect(base, vals, false);
	config_collect(config, vals, true);
	return config_build(vals);
}

/* Every key with its effective value: the topic's, else the broker default. */
Jsonb *
TopicConfigEffective(Jsonb *config)
{
	const char *vals[NUM_CONFIG_KEYS] = {0};

	/* validated: the argument of effective_config() may come from anyone */
	config_collect(config, vals, true);
	for (int i = 0; i < NUM_CONFIG_KEYS; i++)
	{
		const char *why;

		if (vals[i] == NULL)
			vals[i] = config_canonical(&config_keys[i], config_keys[i].value, &why);
	}
	return config_build(vals);
}

int64
TopicConfigParseLong(const char *key, const char *value)
{
	int64		result;

	if (value == NULL || !parse_int64(value, &result))
		elog(ERROR, "stored topic config key \"%s\" is not an integer", key);
	return result;
}

TopicTimestampType
TopicConfigParseTimestampType(const char *value)
{
	if (value == NULL)
		return TOPIC_TS_DEFAULT;
	return strcmp(value, "LogAppendTime") == 0 ? TOPIC_TS_LOG_APPEND_TIME : TOPIC_TS_CREATE_TIME;
}

int64
TopicConfigDefaultMaxMessageBytes(void)
{
	return TopicConfigParseLong("max.message.bytes", config_key_find("max.message.bytes")->value);
}

bool
TopicConfigDefaultLogAppendTime(void)
{
	return strcmp(config_key_find("message.timestamp.type")->value, "LogAppendTime") == 0;
}

/* The effective value of an integer key: the topic's, else the default. */
int64
TopicConfigEffectiveLong(Jsonb *config, const char *key)
{
	const char *vals[NUM_CONFIG_KEYS] = {0};
	ConfigKey  *k = config_key_find(key);
	int			i = k - config_keys;

	Assert(k != NULL && k->kind == CFG_LONG);
	config_collect(config, vals, false);
	return TopicConfigParseLong(key, vals[i] ? vals[i] : k->value);
}

bool
TopicConfigDefaultCompacted(void)
{
	return strstr(config_key_find("cleanup.policy")->value, "compact") != NULL;
}
