import { DEFAULT_IMAGE_REPOSITORY, imageRepository, TerminalError } from '@pgmesh/model'

/** The image when neither the database nor the host names one (its tags are the version manifest's, in the model). */
export { DEFAULT_IMAGE_REPOSITORY }

/**
 * The image an instance runs (issue 16): the database's `orchestrator_opts.swarm.image` only when its repository is
 * one this host allows (by default, only its own default image's repository, so a database may pick a tag of it but
 * not another image), else the host's default. The daemon holds the Docker socket as root, and the document a spec
 * comes from is written by any member, so the host that runs the container decides, not the host that took the
 * request. A refused image fails the instance for good (TerminalError) until the spec changes. The repositories of
 * this host's version manifest are allowed too: the operator listed those images in the host's own file.
 */
export function chooseImage (input: {
  specImage: string | undefined, defaultImage: string | undefined, allowedRepositories: readonly string[] | undefined, major: number,
  manifestRepositories?: readonly string[]
}): string {
  const fallback = input.defaultImage ?? `${DEFAULT_IMAGE_REPOSITORY}:${input.major}`
  if (input.specImage === undefined) return fallback
  const allowed = [...new Set([...(input.allowedRepositories ?? [imageRepository(fallback)]), ...(input.manifestRepositories ?? [])])]
  if (!allowed.includes(imageRepository(input.specImage))) {
    throw new TerminalError(`image ${JSON.stringify(input.specImage.slice(0, 255))} is not allowed on this host: its repository must be ${allowed.join(' or ')}`)
  }
  return input.specImage
}
