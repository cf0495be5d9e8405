// Run calls of the npm `moondream` client and print their results as JSON.
//
// Usage: node run_client.js < spec.json, where spec.json is
//   {"endpoint": "...", "apiKey": "", "calls": [{"method": "point",
//    "request": {"image": {"imageUrl": "..."}, "object": "..."}}]}
// Each call prints {"result": ...} or {"error": message}; streamed text is joined.
"use strict";

const { vl } = require("moondream");

async function runCall(client, call) {
  try {
    const result = await client[call.method](call.request);
    for (const [name, value] of Object.entries(result)) {
      if (value && typeof value[Symbol.asyncIterator] === "function") {
        let text = "";
        for await (const piece of value) {
          text += piece;
        }
        result[name] = text;
      }
    }
    return { result };
  } catch (error) {
    return { error: error.message };
  }
}

async function main() {
  let input = "";
  for await (const piece of process.stdin) {
    input += piece;
  }
  const spec = JSON.parse(input);
  const client = new vl({ apiKey: spec.apiKey, endpoint: spec.endpoint });
  const outputs = [];
  for (const call of spec.calls) {
    outputs.push(await runCall(client, call));
  }
  process.stdout.write(JSON.stringify(outputs));
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
