/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { svelteTesting } from '@testing-library/svelte/vite';
import { fileURLToPath } from 'node:url';

const outDir = fileURLToPath(new URL('../src/klaw/api/http/ui_dist', import.meta.url));
const api = process.env.KLAW_API ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: process.env.VITEST ? [svelte(), svelteTesting()] : [svelte()],
  base: '/',
  build: {
    outDir,
    emptyOutDir: true,
    assetsDir: 'static',
    target: 'es2022',
    chunkSizeWarningLimit: 800,
  },
  worker: { format: 'es' },
  server: {
    port: 5173,
    proxy: { '/api': { target: api, changeOrigin: false } },
  },
  preview: {
    proxy: { '/api': { target: api, changeOrigin: false } },
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.ts'],
    setupFiles: ['src/tests/setup.ts'],
  },
});
