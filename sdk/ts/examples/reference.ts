// The API reference's TypeScript example, verbatim apart from the import path resolution
// (the package refers to itself by name). `npm test` type-checks it under strict settings.
import { Client } from "dejima";

export async function reference(): Promise<void> {
  const dj = new Client();      // or new Client({ host: "…", token: "…" })
  const isl = await dj.createIsland("git@github.com:you/foo.git", { agent: "claude-code" });
  await dj.addAgent(isl.name, { type: "codex" });
  console.log(await dj.exec(isl.name, ["git", "status", "--short"]));

  const s = await dj.attach(isl.name);  // websocket PTY, multi-attach
  s.sendText("ls -la\n");
  s.onData(bytes => process.stdout.write(bytes));
}
