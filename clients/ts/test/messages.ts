// Message types of webtest.proto written by hand with messageType (the browser test uses
// the ones gonet-cli generates).

import { messageType } from "../src/index.js";

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

export const Echo = messageType<Echo>(1, "webtest.Echo");
export const Echoed = messageType<Echo>(2, "webtest.Echoed");
export const Fail = messageType<Fail>(3, "webtest.Fail");
export const Stall = messageType<{ key: string }>(4, "webtest.Stall");
export const Release = messageType<{ key: string }>(15, "webtest.Release");
export const Subscribe = messageType<Subscribe>(5, "webtest.Subscribe");
export const Tick = messageType<Tick>(6, "webtest.Tick");
export const Subscribed = messageType<Subscribed>(7, "webtest.Subscribed");
export const Relay = messageType<Relay>(9, "webtest.Relay");
export const Login = messageType<Login>(10, "webtest.Login");
export const Whoami = messageType<Record<string, never>>(11, "webtest.Whoami");
export const Identity = messageType<Identity>(12, "webtest.Identity");
export const Ask = messageType<Ask>(13, "webtest.Ask");
export const Answer = messageType<Answer>(14, "webtest.Answer");
