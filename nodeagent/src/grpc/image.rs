//! The CRI-shaped `ImageService` over [`crate::runtime::Runtime`].

use ackemu_proto::ackemu::node::v1 as pb;
use ackemu_proto::ackemu::node::v1::image_service_server::{ImageService, ImageServiceServer};
use tonic::{Request, Response, Status};

use super::status;
use crate::runtime::Runtime;

/// The service over `rt`.
pub fn server(rt: Runtime) -> ImageServiceServer<Svc> {
    ImageServiceServer::new(Svc(rt))
}

/// Adapter.
pub struct Svc(Runtime);

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ImageService for Svc {
    async fn list_images(&self, req: Request<pb::ListImagesRequest>) -> R<pb::ListImagesResponse> {
        let f = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image);
        Ok(Response::new(pb::ListImagesResponse {
            images: self.0.list_images(f.as_deref()),
        }))
    }

    async fn image_status(
        &self,
        req: Request<pb::ImageStatusRequest>,
    ) -> R<pb::ImageStatusResponse> {
        let image = req.into_inner().image.unwrap_or_default().image;
        Ok(Response::new(pb::ImageStatusResponse {
            image: self.0.image_status(&image),
            info: Default::default(),
        }))
    }

    async fn pull_image(&self, req: Request<pb::PullImageRequest>) -> R<pb::PullImageResponse> {
        let image_ref = self
            .0
            .pull_image(req.into_inner())
            .await
            .map_err(status::runtime)?;
        Ok(Response::new(pb::PullImageResponse { image_ref }))
    }
}
