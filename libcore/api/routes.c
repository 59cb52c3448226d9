/* The route table: one row per method and path, matched in order (a
 * literal segment before a :param one).  doc/openapi.yaml describes each
 * row, and tests/bats/60-api.bats checks that they agree. */
#include "api-internal.h"
#include "omnirun/base/util.h"

#define NI omr_api_not_implemented

const struct omr_api_route omr_api_route_table[] = {
	{ "GET", "/healthz", omr_api_healthz, OMR_BODY_NONE, 1, NULL, NULL },
	{ "GET", "/openapi.json", omr_api_openapi, OMR_BODY_NONE, 1, NULL, NULL },
	{ "POST", "/sandboxes", omr_api_sandbox_create, OMR_BODY_JSON, 0, NULL, NULL },
	{ "GET", "/sandboxes", omr_api_sandbox_list, OMR_BODY_NONE, 0, NULL, NULL },
	{ "GET", "/sandboxes/history", omr_api_sandbox_history, OMR_BODY_NONE, 0, NULL, NULL },
	{ "GET", "/sandboxes/:id", omr_api_sandbox_get, OMR_BODY_NONE, 0, NULL, NULL },
	{ "DELETE", "/sandboxes/:id", omr_api_sandbox_delete, OMR_BODY_NONE, 0, NULL, NULL },
	{ "POST", "/sandboxes/:id/commands", omr_api_commands_run, OMR_BODY_JSON, 0, NULL, NULL },
	{ "GET", "/sandboxes/:id/commands", omr_api_commands_list, OMR_BODY_NONE, 0, NULL, NULL },
	{ "POST", "/sandboxes/:id/files", omr_api_files_put_end, OMR_BODY_RAW, 0,
	  omr_api_files_put_begin, omr_api_files_put_abort },
	{ "GET", "/sandboxes/:id/files", omr_api_files_get, OMR_BODY_NONE, 0, NULL, NULL },
	{ "DELETE", "/sandboxes/:id/files", omr_api_files_delete, OMR_BODY_NONE, 0, NULL, NULL },
	{ "POST", "/sandboxes/:id/files/sign", omr_api_files_sign, OMR_BODY_JSON, 0, NULL, NULL },
	/* Signed file URLs need no token: the signature is the credential. */
	{ "GET", "/files/signed/:id", omr_api_signed_get, OMR_BODY_NONE, 1, NULL, NULL },
	{ "POST", "/files/signed/:id", omr_api_files_put_end, OMR_BODY_RAW, 1,
	  omr_api_signed_put_begin, omr_api_files_put_abort },
	{ "POST", "/sandboxes/:id/exposures", omr_api_exposures_create, OMR_BODY_JSON, 0, NULL, NULL },
	{ "GET", "/sandboxes/:id/exposures", omr_api_exposures_list, OMR_BODY_NONE, 0, NULL, NULL },
	{ "DELETE", "/sandboxes/:id/exposures/:eid", omr_api_exposures_delete, OMR_BODY_NONE, 0,
	  NULL, NULL },
	{ "POST", "/sandboxes/:id/pause", omr_api_sandbox_pause, OMR_BODY_JSON, 0, NULL, NULL },
	{ "POST", "/sandboxes/:id/resume", omr_api_sandbox_resume, OMR_BODY_JSON, 0, NULL, NULL },
	{ "POST", "/sandboxes/:id/timeout", omr_api_sandbox_timeout, OMR_BODY_JSON, 0, NULL, NULL },
	{ "POST", "/sandboxes/:id/fork", omr_api_sandbox_fork, OMR_BODY_JSON, 0, NULL, NULL },
	/* The vault, secrets and the LLM proxy come with their own issues. */
	{ "POST", "/sandboxes/:id/secrets", NI, OMR_BODY_JSON, 0, NULL, NULL },
	{ "POST", "/vault/init", NI, OMR_BODY_JSON, 0, NULL, NULL },
	{ "POST", "/vault/credentials", NI, OMR_BODY_JSON, 0, NULL, NULL },
	{ "GET", "/vault/credentials", NI, OMR_BODY_NONE, 0, NULL, NULL },
	{ "DELETE", "/vault/credentials/:key", NI, OMR_BODY_NONE, 0, NULL, NULL },
	{ "POST", "/llm/v1/chat/completions", NI, OMR_BODY_JSON, 0, NULL, NULL },
	{ "GET", "/llm/v1/models", NI, OMR_BODY_NONE, 0, NULL, NULL },
	{ "GET", "/llm/v1/usage", NI, OMR_BODY_NONE, 0, NULL, NULL },
	{ "POST", "/auth/magic-link/request", omr_api_magic_request, OMR_BODY_JSON, 1, NULL, NULL },
	{ "POST", "/auth/otp/verify", omr_api_otp_verify, OMR_BODY_JSON, 1, NULL, NULL },
	{ "GET", "/auth/me", omr_api_auth_me, OMR_BODY_NONE, 0, NULL, NULL },
	{ "POST", "/auth/tokens", omr_api_tokens_create, OMR_BODY_JSON, 0, NULL, NULL },
	{ "GET", "/auth/tokens", omr_api_tokens_list, OMR_BODY_NONE, 0, NULL, NULL },
	{ "DELETE", "/auth/tokens/:id", omr_api_tokens_delete, OMR_BODY_NONE, 0, NULL, NULL },
};

const size_t omr_api_route_count = OMR_ARRAY_SIZE(omr_api_route_table);
