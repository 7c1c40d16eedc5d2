// Message types of webtest.proto written by hand with messageType (the browser test uses
// the ones gonet-cli generates). JSON leaves zero values out, as Go does: each type fills
// them in.

import { messageType } from "../src/index.js";

/** A type's fill: the zero values of its fields under what came. */
const zeros =
  <T>(defaults: T) =>
  (value: Partial<T>): T => ({ ...defaults, ...value });

export interface Echo { text: string; count: number }
export interface Fail { code: number; message: string }
export interface Subscribe { count: number; text: string }
export interface Tick { n: number; text: string }
export interface Subscribed { count: number }
export interface Relay { to: string; text: string }
export interface Login { name: string; secret: string }
export interface Identity { name: string; platform: string; version: string }
export interface Ask { text: string }
export interface Answer { text: string }

export const Echo = messageType<Echo>(1, "webtest.Echo", zeros<Echo>({ text: "", count: 0 }));
export const Echoed = messageType<Echo>(2, "webtest.Echoed", zeros<Echo>({ text: "", count: 0 }));
export const Fail = messageType<Fail>(3, "webtest.Fail", zeros<Fail>({ code: 0, message: "" }));
export const Stall = messageType<{ key: string }>(4, "webtest.Stall", zeros<{ key: string }>({ key: "" }));
export const Release = messageType<{ key: string }>(15, "webtest.Release", zeros<{ key: string }>({ key: "" }));
export const Subscribe = messageType<Subscribe>(5, "webtest.Subscribe", zeros<Subscribe>({ count: 0, text: "" }));
export const Tick = messageType<Tick>(6, "webtest.Tick", zeros<Tick>({ n: 0, text: "" }));
export const Subscribed = messageType<Subscribed>(7, "webtest.Subscribed", zeros<Subscribed>({ count: 0 }));
export const Relay = messageType<Relay>(9, "webtest.Relay", zeros<Relay>({ to: "", text: "" }));
export const Login = messageType<Login>(10, "webtest.Login", zeros<Login>({ name: "", secret: "" }));
export const Whoami = messageType<Record<string, never>>(11, "webtest.Whoami");
export const Identity = messageType<Identity>(12, "webtest.Identity", zeros<Identity>({ name: "", platform: "", version: "" }));
export const Ask = messageType<Ask>(13, "webtest.Ask", zeros<Ask>({ text: "" }));
export const Answer = messageType<Answer>(14, "webtest.Answer", zeros<Answer>({ text: "" }));
