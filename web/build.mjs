// Build the Dejima dashboard: bundle src/app.js (and its CSS) with esbuild into dist/,
// copy index.html, write a gzip -9 copy of each file and a manifest with their sizes.
// Deterministic: the same inputs give the same bytes (no timestamps anywhere).
import { build } from 'esbuild';
import { gzipSync, constants } from 'node:zlib';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
const BUDGET = 400 * 1024; // JS + CSS, gzipped

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

await build({
  absWorkingDir: root,
  entryPoints: { app: 'src/app.js' },
  outdir: dist,
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  legalComments: 'eof',
  sourcemap: false,
  charset: 'utf8',
  logLevel: 'warning',
});
copyFileSync(join(root, 'src/index.html'), join(dist, 'index.html'));

const files = ['index.html', 'app.js', 'app.css'];
const manifest = { files: [], total_bytes: 0, total_gzip_bytes: 0, js_css_gzip_bytes: 0 };
for (const name of files) {
  const bytes = readFileSync(join(dist, name));
  const gz = gzipSync(bytes, { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(join(dist, `${name}.gz`), gz);
  manifest.files.push({ name, bytes: bytes.length, gzip_bytes: gz.length });
  manifest.total_bytes += bytes.length;
  manifest.total_gzip_bytes += gz.length;
  if (name.endsWith('.js') || name.endsWith('.css')) manifest.js_css_gzip_bytes += gz.length;
}
manifest.budget_gzip_bytes = BUDGET;
writeFileSync(join(dist, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');

for (const f of manifest.files) {
  console.log(`${f.name.padEnd(12)} ${String(f.bytes).padStart(8)} B  gzip ${String(f.gzip_bytes).padStart(7)} B`);
}
const kb = (n) => (n / 1024).toFixed(1);
console.log(`JS+CSS gzipped total: ${manifest.js_css_gzip_bytes} B (${kb(manifest.js_css_gzip_bytes)} KiB of ${kb(BUDGET)} KiB budget)`);
if (manifest.js_css_gzip_bytes > BUDGET) {
  console.error('over budget');
  process.exit(1);
}
