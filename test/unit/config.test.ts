import { describe, expect, it } from "vitest";
import {
  ConfigError,
  envName,
  flagKey,
  loadConfig,
  SETTINGS,
  storeUrl,
} from "../../src/core/config.js";

const machine = { cpus: 8, memoryMb: 16_000, hostname: "box", pid: 42 };
const load = (env: Record<string, string> = {}, flags: Record<string, unknown> = {}) =>
  loadConfig({ env, flags, machine });

describe("configuration", () => {
  it("has the documented defaults", () => {
    const config = load();
    expect(config.port).toBe(7070);
    expect(config.host).toBe("127.0.0.1");
    expect(config.leaseTtlMs).toBe(30_000);
    expect(config.heartbeatIntervalMs).toBe(10_000);
    expect(config.maxHeartbeatFailures).toBe(3);
    expect(config.shutdownGraceMs).toBe(30_000);
    expect(config.killGraceMs).toBe(5_000);
    expect(config.flushIntervalMs).toBe(1_000);
    expect(config.flushMaxEvents).toBe(50);
    expect(config.maxBufferedEvents).toBe(10_000);
    expect(config.maxBodyBytes).toBe(1_048_576);
    expect(config.cpus).toBe(8);
    expect(config.name).toBe("box-42");
    expect(storeUrl(config)).toBe("sqlite:./.baton/baton.db");
  });

  it("names every environment variable BATON_ + upper snake case", () => {
    expect(envName("leaseTtlMs")).toBe("BATON_LEASE_TTL_MS");
    expect(envName("maxBodyBytes")).toBe("BATON_MAX_BODY_BYTES");
    expect(envName("port")).toBe("BATON_PORT");
    for (const name of Object.keys(SETTINGS) as Array<keyof typeof SETTINGS>) {
      expect(envName(name)).toMatch(/^BATON_[A-Z0-9_]+$/);
    }
  });

  it("lets flags override the environment, which overrides defaults", () => {
    expect(load({ BATON_PORT: "8000" }).port).toBe(8000);
    expect(load({ BATON_PORT: "8000" }, { [flagKey("port")]: "9000" }).port).toBe(9000);
    expect(load({ BATON_LEASE_TTL_MS: "60000" }).leaseTtlMs).toBe(60_000);
    expect(load({}, { leaseTtl: "1m" }).leaseTtlMs).toBe(60_000);
    expect(load({ BATON_QUEUES: "a, b" }).queues).toEqual(["a", "b"]);
  });

  it("refuses bad values, naming the source and the value", () => {
    expect(() => load({ BATON_PORT: "http" })).toThrow(/BATON_PORT="http": must be an integer/);
    expect(() => load({}, { port: "70000" })).toThrow(
      /--port "70000": must be between 0 and 65535/,
    );
    expect(() => load({}, { leaseTtl: "soon" })).toThrow(ConfigError);
  });

  it("refuses a heartbeat interval that is not shorter than the lease", () => {
    expect(() => load({}, { leaseTtl: "5s", heartbeatInterval: "5s" })).toThrow(
      /heartbeat interval \(5000ms\) must be shorter than the lease TTL \(5000ms\)/,
    );
  });

  it("refuses a kill grace that leaves no time to renew a lease before its guard stops the job", () => {
    expect(() => load({}, { leaseTtl: "2s", heartbeatInterval: "100ms" })).toThrow(
      /kill grace \(5000ms\) plus heartbeat interval \(100ms\) must be shorter than the lease TTL \(2000ms\)/,
    );
    const fine = load({}, { leaseTtl: "2s", heartbeatInterval: "100ms", killGrace: "500ms" });
    expect(fine.killGraceMs).toBe(500);
  });
});
