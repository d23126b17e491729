#!/usr/bin/env node
// Drive the Anthropic TypeScript SDK against a Tollway gateway.
//
// Env: TOLLWAY_BASE_URL (e.g. http://127.0.0.1:8080), TOLLWAY_API_KEY, TOLLWAY_MODEL.
// Optional: TOLLWAY_MAX_TOKENS (default 256), TOLLWAY_TIMEOUT_MS (default 60000).
//
// Prints ONE JSON object on stdout:
//   {"create": {stop_reason, text, usage},
//    "stream": {text, deltas, stop_reason, usage},
//    "tool":   {first_stop_reason, tool_name, tool_input, final_text}}
// Exits non-zero with a message on stderr on any exception or failed expectation.

import Anthropic from '@anthropic-ai/sdk';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`missing env ${name}`);
  return v;
}

function textOf(message) {
  return message.content
    .filter((b) => b.type === 'text')
    .map((b) => b.text)
    .join('');
}

async function main() {
  const baseURL = need('TOLLWAY_BASE_URL');
  const apiKey = need('TOLLWAY_API_KEY');
  const model = need('TOLLWAY_MODEL');
  const maxTokens = Number(process.env.TOLLWAY_MAX_TOKENS || 256);
  const timeout = Number(process.env.TOLLWAY_TIMEOUT_MS || 60000);

  const client = new Anthropic({ baseURL, apiKey, maxRetries: 0, timeout });
  const out = {};

  // (a) non-streaming create
  const created = await client.messages.create({
    model,
    max_tokens: maxTokens,
    messages: [{ role: 'user', content: 'Say hello in one short sentence.' }],
  });
  out.create = {
    stop_reason: created.stop_reason,
    text: textOf(created),
    usage: created.usage,
  };

  // (b) streaming via the MessageStream helper
  const deltas = [];
  const stream = client.messages.stream({
    model,
    max_tokens: maxTokens,
    messages: [{ role: 'user', content: 'Count from 1 to 5.' }],
  });
  stream.on('text', (delta) => deltas.push(delta));
  const streamed = await stream.finalMessage();
  out.stream = {
    text: textOf(streamed),
    deltas: deltas.length,
    stop_reason: streamed.stop_reason,
    usage: streamed.usage,
  };
  if (deltas.join('') !== out.stream.text) {
    throw new Error(
      `stream: concatenated text deltas ${JSON.stringify(deltas.join(''))} != final text ${JSON.stringify(out.stream.text)}`,
    );
  }

  // (c) tool round trip
  const tools = [
    {
      name: 'Bash',
      description: 'run a shell command',
      input_schema: {
        type: 'object',
        properties: { command: { type: 'string' } },
        required: ['command'],
      },
    },
  ];
  const messages = [{ role: 'user', content: 'call Bash with {"command": "echo hi"}' }];
  const first = await client.messages.create({ model, max_tokens: maxTokens, tools, messages });
  const toolUse = first.content.find((b) => b.type === 'tool_use');
  if (first.stop_reason !== 'tool_use' || !toolUse) {
    throw new Error(
      `tool: expected stop_reason "tool_use" with a tool_use block, got ${first.stop_reason}: ${JSON.stringify(first.content)}`,
    );
  }
  messages.push({ role: 'assistant', content: first.content });
  messages.push({
    role: 'user',
    content: [{ type: 'tool_result', tool_use_id: toolUse.id, content: 'hi' }],
  });
  const second = await client.messages.create({ model, max_tokens: maxTokens, tools, messages });
  const finalText = textOf(second);
  if (!finalText) {
    throw new Error(`tool: expected a text reply after tool_result, got ${JSON.stringify(second.content)}`);
  }
  out.tool = {
    first_stop_reason: first.stop_reason,
    tool_name: toolUse.name,
    tool_input: toolUse.input,
    final_text: finalText,
  };

  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  const status = err && err.status ? ` (HTTP ${err.status})` : '';
  process.stderr.write(`sdk_check failed${status}: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
