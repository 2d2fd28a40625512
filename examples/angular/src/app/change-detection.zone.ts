import { provideZoneChangeDetection } from "@angular/core";
import type { EnvironmentProviders, Provider } from "@angular/core";

/** The same app with zone.js (angular.json's `zone` configuration loads its polyfill). */
export const changeDetection: (Provider | EnvironmentProviders)[] = [provideZoneChangeDetection({ eventCoalescing: true })];
