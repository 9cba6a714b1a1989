#!/usr/bin/env node
// The package's command. The TypeScript sources are compiled to dist/ by `npm run build`
// (run automatically by `npm install` and `npm start`).
import { main } from '../dist/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exitCode = 1;
  },
);
