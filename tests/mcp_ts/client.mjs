// Drives ChittyAuth's MCP WebSocket endpoint with the TypeScript SDK's WebSocketClientTransport, which
// cannot send headers, so the credential travels as ?access_token=. Calls every tool (and failure paths),
// then prints one JSON summary line for tests/test_mcp_typescript.py to check.
//
// Usage: node --experimental-websocket client.mjs '{"url": "ws://…/mcp/ws", "key": "chitty_…",
//        "chittyId": "CHITTY-…", "other": "CHITTY-…"}'
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { WebSocketClientTransport } from "@modelcontextprotocol/sdk/client/websocket.js";

const config = JSON.parse(process.argv[2]);
const url = new URL(config.url);
url.searchParams.set("access_token", config.key);

const client = new Client({ name: "chittyauth-ts-test", version: "1.0.0" });
await client.connect(new WebSocketClientTransport(url));

const results = {};
async function call(label, name, args = {}) {
  const result = await client.callTool({ name, arguments: args });
  results[label] = {
    firstLine: result.content[0].text.split("\n")[0],
    isError: result.isError ?? false,
    structured: result.structuredContent,
  };
  return result.structuredContent;
}

const { tools } = await client.listTools();

const me = await call("whoami", "whoami");
const key = await call("generate_api_key", "generate_api_key", { chitty_id: config.other, name: "from typescript" });
await call("validate_api_key", "validate_api_key", { api_key: key.api_key });
const mistyped = key.api_key.slice(0, -1) + (key.api_key.endsWith("0") ? "1" : "0");
await call("validate_api_key_invalid", "validate_api_key", { api_key: mistyped });
const token = await call("generate_jwt", "generate_jwt", { chitty_id: config.chittyId, expires_in: "5m" });
await call("validate_jwt", "validate_jwt", { token: token.token });
await call("check_permission", "check_permission", { chitty_id: config.chittyId, permission: "audit:read" });
await call("check_permissions", "check_permissions", {
  checks: [{ chitty_id: config.chittyId, permission: "audit:read" }, { chitty_id: config.other, permission: "audit:read" }],
});
const grant = await call("grant_authorization", "grant_authorization", {
  grantor_chitty_id: config.chittyId,
  grantee_chitty_id: config.other,
  permission: "audit:read",
});
await call("grant_authorization_mismatch", "grant_authorization", {
  grantor_chitty_id: config.other,
  grantee_chitty_id: config.other,
  permission: "audit:read",
});
await call("revoke_authorization", "revoke_authorization", { grant_id: grant.id });
await call("list_sessions", "list_sessions");
await call("list_api_keys", "list_api_keys", { chitty_id: config.other });
const rotated = await call("rotate_api_key", "rotate_api_key", { key_id: key.key_id, overlap_seconds: 0 });
await call("revoke_api_key", "revoke_api_key", { key_id: rotated.key_id });
await call("revoke_api_key_unknown", "revoke_api_key", { key_id: "key_doesnotexist" });
await call("revoke_jwt", "revoke_jwt", { token: token.token });
await call("revoke_session_unknown", "revoke_session", { session_id: "ses_unknown" });
await call("invalid_arguments", "check_permission", { chitty_id: 42 });

let unknownTool = null;
try {
  await client.callTool({ name: "no_such_tool", arguments: {} });
} catch (error) {
  unknownTool = { code: error.code, message: error.message };
}

await client.close();
console.log(
  JSON.stringify({
    server: client.getServerVersion(),
    tools: tools.map((tool) => ({
      name: tool.name,
      hasInputSchema: tool.inputSchema?.type === "object",
      hasOutputSchema: tool.outputSchema?.type === "object",
    })),
    sessionId: me.session_id,
    results,
    unknownTool,
  }),
);
